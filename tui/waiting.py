"""How the TUI's polling workers wait between rounds: until a deadline, or sooner
when someone asks for the next round now."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_for_wake(wake: asyncio.Event, seconds: float) -> None:
    """Return after ``seconds`` or once ``wake`` is set, whichever comes first; ``wake``
    is clear again on return.

    ``asyncio.timeout``, not ``asyncio.wait_for``: on Python 3.11 ``wait_for`` can
    swallow a cancellation that arrives as the event is set, and the worker lives on.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, seconds)):
            await wake.wait()
    wake.clear()
