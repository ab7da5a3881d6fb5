"""``devstack bench``: benchmarks that print figures (not tests)."""

from __future__ import annotations

import argparse


def add_bench_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    sub.add_parser("overhead", help="cluster latency vs a native docker run")


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError(args.bench)
