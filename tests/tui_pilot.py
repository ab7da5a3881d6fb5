"""What the TUI's pilot tests share: the terminal size, waiting on what the app
shows (with a deadline, never a fixed sleep), counting the app's poll rounds, and
running an async test."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from textual.pilot import Pilot

from tests.conftest import wait_until_async
from tui.app import HOME, VIEWS, BacalhauApp

SIZE = (120, 40)
T = TypeVar("T")


async def until(
    pilot: Pilot[Any], predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1
) -> T:
    """Let the app run until ``predicate()`` is truthy; its value. Fails after ``timeout``
    seconds, naming ``what``."""
    return await wait_until_async(predicate, timeout, interval, what, pause=pilot.pause)


S = TypeVar("S")


async def screen_shown(
    pilot: Pilot[Any], kind: type[S], timeout: float, what: str, interval: float = 0.1
) -> S:
    """Let the app run until its current screen is a ``kind``; that screen."""
    app = pilot.app
    found = await until(
        pilot, lambda: app.screen if isinstance(app.screen, kind) else None, timeout, what, interval
    )
    assert isinstance(found, kind)
    return found


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def warmed_up(app: BacalhauApp) -> bool:
    """Whether the app has mounted every view and is back home (it does so once, right
    after it starts): a screen pushed before then may land on another view's stack."""
    try:
        stacks = [app.get_screen_stack(view.mode) for view in VIEWS]
    except KeyError:
        return False
    return all(stacks) and app.current_mode == HOME


# The rounds an app polls by itself once started: its first, and the one the jobs view
# asks for (its list is stale) when the app mounts it at start.
OWN_ROUNDS = 2


async def rounds(pilot: Pilot[Any], count: int, timeout: float = 20) -> None:
    """Let the app (with a refresh too long to come round during a test) poll ``count``
    rounds in all, at least :data:`OWN_ROUNDS`: those it makes by itself once every view
    is mounted, then one per :meth:`BacalhauApp.poll_now`. Counting from its own rounds,
    not from whichever came first, what a screen shows after them is the same every
    run."""
    app = pilot.app
    assert isinstance(app, BacalhauApp) and count >= OWN_ROUNDS
    source = app.source
    await until(
        pilot,
        lambda: warmed_up(app) and source.statistics().rounds >= OWN_ROUNDS,
        timeout,
        "every view mounted and the app's own rounds",
    )
    while (done := source.statistics().rounds) < count:
        app.poll_now()
        await until(pilot, lambda d=done: source.statistics().rounds > d, timeout, "a round")
