"""What a screen may ask of the app it runs in.

This module owns :class:`TuiHost`, the part of :class:`~tui.app.BacalhauApp` the
screens use (its source, its latest snapshot, its refresh interval, "poll now" and
"go back"), and :func:`host_of`. Screens reach the app through it and never import
:mod:`tui.app`: the app imports the screens, so the dependency runs one way.
"""

from __future__ import annotations

from typing import Protocol, cast

from textual.dom import DOMNode

from tui.source import ClusterSnapshot, ClusterSource


class TuiHost(Protocol):
    """The app as the screens see it."""

    source: ClusterSource
    snapshot: ClusterSnapshot | None
    """The latest round of the app's poller (None before the first); reactive: a
    screen watches it with ``self.watch(self.app, "snapshot", ...)``."""
    refresh_interval: float
    """Seconds between the app's polls; a screen that polls too keeps the same pace."""

    def poll_now(self) -> None:
        """Start the app's next round now instead of at the next refresh."""
        ...

    async def action_back(self) -> None:
        """Pop the pushed screen on top, else go back to the home view."""
        ...


def host_of(node: DOMNode) -> TuiHost:
    """The app ``node`` runs in, as a :class:`TuiHost`."""
    return cast(TuiHost, node.app)
