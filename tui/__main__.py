"""``python -m tui``: the TUI on a running devstack, as ``devstack up`` opens it.

This module owns the TUI's command line: ``--state-dir`` (default ``./.devstack`` or
``$DEVSTACK_DIR``), ``--refresh SECONDS`` and ``--ask-stop``. With ``--ask-stop``,
quitting asks whether to stop the cluster, and a yes exits with
:data:`tui.STOP_CLUSTER_EXIT` so that the ``devstack up`` that started this process
(the nodes' parent) stops it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devstack import state as st
from node.argtypes import positive
from tui import STOP_CLUSTER_EXIT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tui", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=Path, default=st.default_state_dir())
    parser.add_argument(
        "--refresh",
        type=positive(float),
        default=None,
        help="seconds between polls (default 1, 2 above 20 nodes)",
    )
    parser.add_argument(
        "--ask-stop", action="store_true", help="on quit, ask whether to stop the cluster"
    )
    args = parser.parse_args(argv)
    from tui.app import TuiFailed, run_tui

    try:
        stop = run_tui(args.state_dir, refresh=args.refresh, ask_stop_on_quit=args.ask_stop)
    except TuiFailed as exc:
        return exc.return_code if exc.return_code != STOP_CLUSTER_EXIT else 1
    return STOP_CLUSTER_EXIT if stop else 0


if __name__ == "__main__":
    sys.exit(main())
