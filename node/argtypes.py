"""Argparse types and choices shared by the node's and the devstack's command lines.

Light on purpose (the standard library only): every ``devstack`` verb builds its
parser from here before it imports what it runs. The choices the node owns are
written out; ``tests/unit/test_bench_options.py`` checks them against the node's.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

#: ``node.bidder.BIDDERS`` (sorted) and ``DEFAULT_BIDDER``.
BIDDERS = ("all", "bacalhau-2022", "hash-space")
DEFAULT_BIDDER = "hash-space"
#: ``node.requester.DISPATCHES`` and ``DEFAULT_DISPATCH``.
DISPATCHES = ("offer", "gossip")
DEFAULT_DISPATCH = "offer"


def positive(kind: type[int] | type[float], *, zero: bool = False) -> Callable[[str], int | float]:
    """An argparse type: a finite number of ``kind`` above 0 (at least 0 with ``zero``);
    anything else is an ``ArgumentTypeError`` naming what was given."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'>=' if zero else '>'} 0, got {text}")
        return value

    return parse


def add_instrument_args(parser: argparse.ArgumentParser) -> None:
    """``--lock-warn-ms`` and ``--stall-ms``, for a node or for every node of a devstack."""
    from profiles.locks import DEFAULT_WARN_MS
    from profiles.stalls import DEFAULT_THRESHOLD_MS

    parser.add_argument(
        "--lock-warn-ms",
        type=positive(float, zero=True),
        default=DEFAULT_WARN_MS,
        help=f"warn when a lock is waited for or held longer (default {DEFAULT_WARN_MS:g} ms)",
    )
    parser.add_argument(
        "--stall-ms",
        type=positive(float),
        default=DEFAULT_THRESHOLD_MS,
        help=f"a loop step longer than this is a stall (default {DEFAULT_THRESHOLD_MS:g} ms)",
    )


def share(text: str) -> float:
    """An argparse type: a share in (0, 1], e.g. ``0.25``."""
    value = positive(float)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a share in (0, 1], got {text}")
    return value


def add_forgery_args(parser: argparse.ArgumentParser) -> None:
    """How bad actors forge (``node/badactor.py``), for a node or every bad actor of a
    devstack: ``--collude`` / ``--no-collude`` and ``--bad-actor-rate``."""
    parser.add_argument(
        "--collude",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bad actors forge alike, as one adversary (default), or each its own way",
    )
    parser.add_argument(
        "--bad-actor-rate",
        type=share,
        default=1.0,
        metavar="P",
        help="the share of its results a bad actor forges (default 1: all)",
    )


def forgery_refused(bad_actors: int, collude: bool, rate: float) -> str | None:
    """Why ``--no-collude`` or ``--bad-actor-rate`` cannot be taken (no bad actor to
    apply them to), or None."""
    if bad_actors == 0 and (not collude or rate != 1.0):
        return "--no-collude and --bad-actor-rate apply to bad actors: give --bad-actor(s) too"
    return None
