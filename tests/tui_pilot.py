"""What the TUI's pilot tests share: the terminal size, waiting on what the app
shows (with a deadline, never a fixed sleep), and running an async test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from textual.pilot import Pilot

from tui.app import HOME, VIEWS, BacalhauApp

SIZE = (120, 40)
T = TypeVar("T")


async def until(pilot: Pilot[Any], predicate: Callable[[], T], timeout: float, what: str) -> T:
    """Let the app run until ``predicate()`` is truthy; its value. Fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last {value!r}")
        await pilot.pause(0.1)


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
