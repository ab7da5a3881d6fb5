"""``python -m tui``: the TUI on a running devstack, and the one way it starts.

This module owns the TUI's command line: ``--state-dir`` (default ``./.devstack`` or
``$DEVSTACK_DIR``), ``--refresh SECONDS`` and ``--ask-stop``. ``devstack tui`` runs
:func:`main` in the ``devstack`` process; ``devstack up`` runs ``python -m tui --ask-stop`` as
a child (:func:`tui_argv` makes both command lines). With ``--ask-stop``, quitting
asks whether to stop the cluster, and a yes exits with :data:`tui.STOP_CLUSTER_EXIT`
so that the ``devstack up`` that started this process (the nodes' parent) stops it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devstack import state as st
from tui import STOP_CLUSTER_EXIT


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def tui_argv(state_dir: Path, refresh: float | None = None, *, ask_stop: bool = False) -> list[str]:
    """The arguments of :func:`main` for the devstack in ``state_dir``."""
    argv = ["--state-dir", str(state_dir)]
    if refresh is not None:
        argv += ["--refresh", repr(refresh)]
    return [*argv, "--ask-stop"] if ask_stop else argv


def main(argv: list[str] | None = None, prog: str = "python -m tui") -> int:
    """Run the TUI until the user quits; the exit status (``prog`` names the command in
    errors): 0, :data:`~tui.STOP_CLUSTER_EXIT` if the user asked to stop the cluster,
    else the failed app's status."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=Path, default=st.default_state_dir())
    parser.add_argument(
        "--refresh",
        type=positive_seconds,
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
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.return_code if exc.return_code != STOP_CLUSTER_EXIT else 1
    return STOP_CLUSTER_EXIT if stop else 0


if __name__ == "__main__":
    sys.exit(main())
