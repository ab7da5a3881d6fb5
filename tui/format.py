"""Pure text formatting for the TUI: sparklines, sizes, durations, rates and short ids.

This module owns how a figure looks in a cell. Every function takes plain values and
returns a string; a figure that does not exist (``None``) is :data:`MISSING`, never a
guess. Nothing here imports Textual or does I/O, so it is unit-tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MISSING = "\N{EN DASH}"
"""What a cell shows for a figure that does not exist (yet)."""

BARS = "▁▂▃▄▅▆▇█"
"""The eight heights of a sparkline, lowest first."""


def sparkline(
    values: Sequence[float | None],
    width: int,
    *,
    lo: float | None = 0.0,
    hi: float | None = None,
) -> str:
    """The last ``width`` values as a string of ``width`` bars (``▁`` to ``█``).

    Values are scaled between ``lo`` and ``hi``; either left ``None`` is taken from
    the values shown (so ``hi=None`` scales to the largest value; ``hi=100.0`` keeps
    CPU % on an absolute scale). A ``None`` value (no figure then) is a space, and so
    is each missing value on the left while the history is shorter than ``width``.
    Values outside the scale are clamped; NaN counts as missing.
    """
    if width <= 0:
        return ""
    shown = [
        None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
        for v in list(values)[-width:]
    ]
    known = [v for v in shown if v is not None]
    pad = " " * (width - len(shown))
    if not known:
        return pad + " " * len(shown)
    bottom = min(known) if lo is None else lo
    top = max(known) if hi is None else hi
    span = top - bottom
    out = []
    for v in shown:
        if v is None:
            out.append(" ")
        elif span <= 0:
            out.append(BARS[0])
        else:
            frac = (min(max(v, bottom), top) - bottom) / span
            out.append(BARS[min(len(BARS) - 1, int(frac * len(BARS)))])
    return pad + "".join(out)


def short_id(peer_id: str, chars: int = 6) -> str:
    """The tail of a peer id, e.g. ``dhhdJx`` (every ed25519 peer id starts ``12D3KooW``,
    so the tail is what tells two apart; ``devstack`` finds a node by any part of it)."""
    return peer_id[-chars:] if chars > 0 else ""


def short_job_id(job_id: str) -> str:
    """A job id's first group (``47db7acc``), as ``devstack`` users type it."""
    return job_id.split("-", 1)[0]


def fmt_bytes(n: float | None) -> str:
    """Bytes in binary units, at most 5 characters and one decimal under 100:
    ``512B``, ``83.6M``, ``102M``, ``1.1G``."""
    if n is None:
        return MISSING
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(value) < 1000 or unit == "T":
            if unit == "B":
                return f"{value:.0f}B"
            return f"{value:.1f}{unit}" if abs(value) < 100 else f"{value:.0f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def fmt_bytes_long(n: float | None) -> str:
    """Bytes for prose (the summary bar): ``264 MiB``, ``1.1 GiB``."""
    if n is None:
        return MISSING
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if value >= 10 or unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def fmt_ms(ms: float | None) -> str:
    """A duration given in milliseconds: ``0.4ms``, ``41ms``, ``1.25s``, ``12.3s``, ``3m05s``."""
    if ms is None or math.isnan(ms):
        return MISSING
    if ms < 0:
        return MISSING
    if ms < 1:
        return f"{ms:.1f}ms"
    if ms < 1000:
        return f"{ms:.0f}ms"
    seconds = ms / 1000
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 100:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def fmt_seconds(seconds: float | None) -> str:
    """A duration given in seconds, as :func:`fmt_ms` shows it."""
    return MISSING if seconds is None else fmt_ms(seconds * 1000)


def fmt_age(seconds: float | None) -> str:
    """How long ago, coarse as ``devstack list`` shows it: ``5s``, ``12m``, ``3.0h``."""
    if seconds is None:
        return MISSING
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def fmt_percent(p: float | None) -> str:
    """A percentage of one core: ``3.1``, ``12.0``, ``187``."""
    if p is None:
        return MISSING
    return f"{p:.0f}" if p >= 100 else f"{p:.1f}"


def fmt_rate(per_s: float | None) -> str:
    """Events per second, the unit left to the column's header: ``0``, ``0.5``, ``31``,
    ``1.2k``."""
    if per_s is None:
        return MISSING
    if per_s == 0:
        return "0"
    if per_s < 10:
        return f"{per_s:.1f}"
    if per_s < 1000:
        return f"{per_s:.0f}"
    return f"{per_s / 1000:.1f}k"


def fmt_int(n: int | None) -> str:
    return MISSING if n is None else str(n)
