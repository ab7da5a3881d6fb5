"""``devstack``: run a local py-bacalhau cluster and talk to it.

This module owns the command line: the table of verbs, the parser, and how a
failure is reported. A verb's code lives in :mod:`devstack.verbs` (or the bench,
profile, locks and simulate modules) and is imported only when that verb runs, and
only the invoked verb's options are built, so every verb starts fast.

Exit status: 0 on success, 1 when the operation failed (the message says why),
2 for bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from devstack.errors import DevstackError, UsageError


class Verb(NamedTuple):
    """One ``devstack`` verb: its help line, the function that runs it and the one
    that adds its options, each named ``module:function`` and imported on use."""

    help: str
    run: str
    arguments: str | None = None


VERBS: dict[str, Verb] = {
    "up": Verb(
        "start N node processes and wait until they form one network",
        "devstack.verbs.cluster:up",
        "devstack.verbs.cluster:up_arguments",
    ),
    "tui": Verb(
        "watch the running devstack in the terminal UI",
        "devstack.verbs.cluster:tui",
        "devstack.verbs.cluster:tui_arguments",
    ),
    "down": Verb(
        "stop every node and remove every container of the devstack",
        "devstack.verbs.cluster:down",
    ),
    "restart": Verb(
        "stop one node and start it again on the same data",
        "devstack.verbs.cluster:restart",
        "devstack.verbs.cluster:restart_arguments",
    ),
    "status": Verb(
        "health, peers and jobs of every node",
        "devstack.verbs.cluster:status",
        "devstack.verbs.cluster:status_arguments",
    ),
    "partition": Verb(
        "cut a simulated host off the others (devstack up --hosts)",
        "devstack.verbs.cluster:partition",
        "devstack.verbs.cluster:host_arguments",
    ),
    "heal": Verb(
        "join a cut-off host to the others again",
        "devstack.verbs.cluster:heal",
        "devstack.verbs.cluster:host_arguments",
    ),
    "logs": Verb(
        "print node logs (one node, or all), or what a job prints (-f: as it prints it)",
        "devstack.verbs.cluster:logs",
        "devstack.verbs.cluster:logs_arguments",
    ),
    "submit": Verb(
        "submit a job: devstack submit IMAGE -- CMD...",
        "devstack.verbs.submit:submit",
        "devstack.verbs.submit:submit_arguments",
    ),
    "list": Verb(
        "jobs requested on any node, newest first",
        "devstack.verbs.jobs:list_jobs",
        "devstack.verbs.jobs:list_arguments",
    ),
    "step": Verb(
        "open the next gate of a job submitted with --step",
        "devstack.verbs.jobs:step",
        "devstack.verbs.jobs:job_arguments",
    ),
    "cancel": Verb(
        "stop a job: its containers are stopped, it ends cancelled",
        "devstack.verbs.jobs:cancel",
        "devstack.verbs.jobs:job_arguments",
    ),
    "describe": Verb(
        "a job's state, executions and every event",
        "devstack.verbs.jobs:describe",
        "devstack.verbs.jobs:describe_arguments",
    ),
    "get": Verb(
        "write each shard's published results to DIR/shard-K",
        "devstack.verbs.jobs:get",
        "devstack.verbs.jobs:get_arguments",
    ),
    "add": Verb(
        "add a file or directory to a node's store; print its CID",
        "devstack.verbs.content:add",
        "devstack.verbs.content:add_arguments",
    ),
    "fetch": Verb(
        "write the tree CID to DIR, as a node has it or fetches it",
        "devstack.verbs.content:fetch",
        "devstack.verbs.content:fetch_arguments",
    ),
    "bench": Verb(
        "benchmarks that print figures",
        "devstack.bench:run",
        "devstack.bench.options:add_bench_parser",
    ),
    "profile": Verb(
        "CPU (pyinstrument) or memory (--memory) profiles of nodes",
        "devstack.verbs.diagnose:profile",
        "devstack.verbs.diagnose:profile_arguments",
    ),
    "locks": Verb(
        "the cluster's most contended locks and loop stalls",
        "devstack.verbs.diagnose:locks",
        "devstack.verbs.diagnose:locks_arguments",
    ),
    "simulate": Verb(
        "simulate bidding on N nodes with the real bidders",
        "devstack.simulate:run",
        "devstack.simulate:add_simulate_parser",
    ),
}


def _load(name: str) -> Callable[..., Any]:
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)  # type: ignore[no-any-return]


def invoked_verb(argv: Sequence[str]) -> str | None:
    """The verb ``argv`` names: its first word that is not an option (nor the value
    of ``--state-dir``)."""
    words = iter(argv)
    for word in words:
        if word == "--state-dir":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(verbs: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the options of ``verbs`` (default: every verb's). The others
    are there by name and help line, enough for ``devstack --help``."""
    parser = argparse.ArgumentParser(prog="devstack", description="A local py-bacalhau cluster.")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where cluster.json, logs and data live (default ./.devstack or $DEVSTACK_DIR)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, verb in VERBS.items():
        p = sub.add_parser(name, help=verb.help, description=verb.help)
        p.set_defaults(run=verb.run)
        if verb.arguments is not None and (verbs is None or name in verbs):
            _load(verb.arguments)(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = invoked_verb(argv)
    parser = build_parser([verb] if verb in VERBS else [])
    args = parser.parse_args(argv)
    if args.state_dir is None:
        from devstack.state import default_state_dir

        args.state_dir = default_state_dir()
    try:
        return int(_load(args.run)(args))
    except UsageError as exc:
        parser.error(str(exc))
    except (DevstackError, TimeoutError) as exc:
        print(f"devstack {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `devstack status | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
