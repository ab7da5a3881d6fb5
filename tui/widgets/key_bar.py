"""The footer of keys, recomposed only when the keys it shows change.

This module owns :class:`KeyBar`, Textual's :class:`~textual.widgets.Footer` with one
difference: Textual's recomposes every key widget whenever its screen's bindings are
reported updated, which includes every time the screen is shown again. Switching views
then cost ~130 ms of CPU here, more than everything else a key press does; the keys
of a view rarely change, so this footer recomposes only when they did.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Footer


def shown_keys(screen: Screen[Any]) -> tuple[tuple[Any, ...], ...]:
    """What a footer on ``screen`` would show: key, label, group, enabled per binding."""
    return tuple(
        (key, binding.description, binding.key_display, binding.group, enabled, binding.tooltip)
        for key, (_node, binding, enabled, _tooltip) in screen.active_bindings.items()
        if binding.show
    )


class KeyBar(Footer):
    """A :class:`~textual.widgets.Footer` that recomposes only when its keys change."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._keys: tuple[tuple[Any, ...], ...] | None = None

    def bindings_changed(self, screen: Screen[Any]) -> None:
        keys = shown_keys(screen)
        if keys == self._keys and self.children:
            return
        self._keys = keys
        super().bindings_changed(screen)
