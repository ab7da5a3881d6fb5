"""Figures over time: one line each of label, latest value, sparkline and peak.

This module owns :class:`TrendLines` and :class:`Trend`. Set
:attr:`TrendLines.trends`; each line's sparkline takes the width left over by the
labels and values, so a wider panel shows more history.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tui.format import MISSING, sparkline


@dataclass(frozen=True)
class Trend:
    """One figure: its ``values`` oldest first (``None``: unknown then), scaled between
    ``lo`` and ``hi`` (``None``: the values' own lowest / highest)."""

    label: str
    value: str  # the latest, formatted
    values: tuple[float | None, ...]
    peak: str = ""  # the highest shown, formatted ("" for none)
    lo: float | None = 0.0
    hi: float | None = None
    style: str = "cyan"


def trend_text(trends: tuple[Trend, ...], width: int) -> Text:
    """The lines for ``trends`` in ``width`` cells."""
    if not trends:
        return Text(MISSING, style="dim")
    label_w = max(len(t.label) for t in trends)
    value_w = max(len(t.value) for t in trends)
    peak_w = max((len(t.peak) for t in trends), default=0)
    spark_w = max(4, width - label_w - value_w - (peak_w + 5 if peak_w else 0) - 2)
    text = Text(no_wrap=True, overflow="crop")
    for i, t in enumerate(trends):
        if i:
            text.append("\n")
        text.append(f"{t.label:<{label_w}} ", style="bold")
        text.append(f"{t.value:>{value_w}} ")
        text.append(sparkline(t.values, spark_w, lo=t.lo, hi=t.hi), style=t.style)
        if t.peak:
            text.append(f" max {t.peak}", style="dim")
    return text


class TrendLines(Widget):
    """A few figures over time, one line each."""

    DEFAULT_CSS = """
    TrendLines {
        height: auto;
    }
    """

    trends: reactive[tuple[Trend, ...]] = reactive(())

    def render(self) -> Text:
        return trend_text(self.trends, self.content_size.width or 60)
