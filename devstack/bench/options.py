"""The command line of ``devstack bench``: every bench's sub-parser, options and defaults.

Every ``devstack`` command builds these parsers, ``devstack --help`` included, so this
module imports only the standard library and :mod:`node.argtypes` (which has the
choices the node owns: bidders, dispatches): never a bench module, the node's roles,
Docker or an HTTP client. The defaults a bench's own code reads too (chaos's
timeouts, the shards' work) live here, and the bench imports them.

A bench's description (its ``--help``) is the second paragraph of its module's
docstring, read from the module's source only when the help is printed. Which bench
runs, and the lazy import of its module, is :func:`devstack.bench.run`.
"""

from __future__ import annotations

import argparse
from typing import Any

from node.argtypes import (
    BIDDERS,
    DEFAULT_BIDDER,
    DEFAULT_DISPATCH,
    DISPATCHES,
    add_forgery_args,
    positive,
)

#: Image of the chaos bench's docker jobs.
CHAOS_IMAGE = "busybox:latest"
#: The chaos jobs' own timeout, and how long one may queue for a free slot. A job whose
#: node died mid-run and sent no word waits this + 30 s for its results at most, and a
#: job short of bids rebids for up to 35 s: the default --settle covers them.
CHAOS_JOB_TIMEOUT_S = 30.0
CHAOS_SETTLE_S = 120.0

#: The shards bench's default work, per file: its word count, its SHA-256 and how many
#: distinct words it has (a sort: the part of the work that costs CPU).
SHARDS_WORK = (
    'for f in /inputs/*.txt; do wc -w "$f"; sha256sum "$f";'
    " echo \"$(tr -s ' ' '\\n' < \"$f\" | sort -u | wc -l) $f\"; done"
)


class BenchParser(argparse.ArgumentParser):
    """A bench's parser: without a description, it takes the second paragraph of the
    docstring of ``module`` (``devstack.bench.NAME``) when its help is printed."""

    def __init__(self, *args: Any, module: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.module = module

    def format_help(self) -> str:
        if self.description is None and self.module is not None:
            self.description = module_description(self.module)
        return super().format_help()


def module_description(module: str) -> str | None:
    """The second paragraph of ``module``'s docstring, read from its source without
    importing it (importing a bench costs the node's imports); None if it has none."""
    import ast
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text()), clean=False)
    paragraphs = (doc or "").split("\n\n")
    return paragraphs[1] if len(paragraphs) > 1 else None


# -- argument types ------------------------------------------------------------------


def _numbers(text: str, kind: type[int] | type[float], expected: str) -> list[Any]:
    """``text``, comma-separated, as ``kind``s; ArgumentTypeError (``expected``, then
    ``text``) if one is not."""
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{expected} {text!r}") from None


def rates(text: str) -> list[float]:
    """``--rates 20,40,80`` of the load bench: positive jobs per second."""
    found = _numbers(text, float, "expected rates like 20,40,80, got")
    if not found or any(r <= 0 for r in found):
        raise argparse.ArgumentTypeError(f"rates must be positive, got {text!r}")
    return found


def counts(text: str) -> list[int]:
    """``--docker-clients 1,4,8`` of the load bench: counts of at least 1."""
    found = _numbers(text, int, "expected counts like 1,4,8, got")
    if not found or any(c < 1 for c in found):
        raise argparse.ArgumentTypeError(f"counts must be at least 1, got {text!r}")
    return found


def cluster_sizes(text: str) -> list[int]:
    """``--nodes 1,5`` of the shards bench: cluster sizes of 1 or more."""
    found = _numbers(text, int, "expected sizes like 1,5; got")
    if not found or min(found) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be 1 or more; got {text!r}")
    return found


# -- the parsers -----------------------------------------------------------------------


#: The byzantine bench's policies (devstack.bench.byzantine.POLICIES has their deals).
BYZANTINE_POLICIES = ("majority", "escalation", "spot", "credibility", "all")


def policy_list(text: str) -> list[str]:
    """``--policies``: comma-separated names of :data:`BYZANTINE_POLICIES`, each once."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BYZANTINE_POLICIES]
    if not names or unknown or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected distinct policies among {', '.join(BYZANTINE_POLICIES)}, got {text!r}"
        )
    return names


def add_cluster_args(
    p: argparse.ArgumentParser,
    *,
    nodes: int,
    hosts: int = 0,
    settle: float | None = None,
    reuse: str | None = "use the devstack running at --state-dir (ignores --nodes, leaves it up)",
) -> None:
    """The options every bench shares: ``--nodes``, ``--hosts``, ``--settle`` (when ``settle`` is
    a default), ``--reuse`` (when it has help) and ``--json``."""
    p.add_argument(
        "--nodes", type=positive(int), default=nodes, help=f"nodes to start (default {nodes})"
    )
    p.add_argument(
        "--hosts",
        type=positive(int, zero=True),
        default=hosts,
        help="spread a fresh cluster's nodes over this many simulated hosts (network"
        f" namespaces; needs root; default {hosts}" + (": all on 127.0.0.1)" if not hosts else ")"),
    )
    if settle is not None:
        p.add_argument(
            "--settle",
            type=positive(float, zero=True),
            default=settle,
            help="seconds to wait after a fresh devstack is ready, while start-up chatter"
            f" dies down (default {settle:g})",
        )
    if reuse is not None:
        p.add_argument("--reuse", action="store_true", help=reuse)
    p.add_argument(
        "--dispatch",
        choices=DISPATCHES,
        default=DEFAULT_DISPATCH,
        help="dispatch of a fresh cluster: offers first (offer), or gossip alone"
        f" (default {DEFAULT_DISPATCH}; --reuse keeps the cluster's own)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def add_job_stream_args(
    p: argparse.ArgumentParser, *, jobs: int, rate: float, settle_why: str = ""
) -> None:
    """The options of a bench that streams jobs through a fault (chaos, partition):
    ``--jobs``, ``--rate``, ``--settle`` (``settle_why`` says why its default), and
    the jobs' ``--engine`` and ``--image``."""
    p.add_argument("--jobs", type=positive(int), default=jobs, help=f"jobs (default {jobs})")
    p.add_argument("--rate", type=positive(float), default=rate, help=f"jobs per second ({rate:g})")
    p.add_argument(
        "--settle",
        type=positive(float),
        default=CHAOS_SETTLE_S,
        help="seconds after the last submission for every job to end (default"
        f" {CHAOS_SETTLE_S:g}{settle_why})",
    )
    p.add_argument("--engine", choices=["noop", "docker"], default="noop")
    p.add_argument(
        "--image", default=CHAOS_IMAGE, help=f"image of docker jobs (default {CHAOS_IMAGE})"
    )


def add_bench_parser(parser: argparse.ArgumentParser) -> None:
    """One sub-parser per bench under ``parser`` (``devstack bench``)."""
    sub = parser.add_subparsers(
        dest="bench", required=True, metavar="BENCH", parser_class=BenchParser
    )

    def add(name: str, help: str) -> BenchParser:
        return sub.add_parser(name, help=help, module=f"devstack.bench.{name}")

    p = add("overhead", "cluster latency vs a native docker run")
    add_cluster_args(p, nodes=5)
    p.add_argument("--jobs", type=positive(int), default=30, help="measured rounds (default 30)")
    p.add_argument(
        "--beside",
        type=positive(int),
        default=None,
        metavar="NODES",
        help="also measure a fresh cluster of this many nodes in the same rounds (e.g. 50"
        " beside --nodes 5), so the two compare without the machine's drift between runs",
    )
    p.add_argument(
        "--warmup", type=positive(int, zero=True), default=1, help="unrecorded rounds first"
    )
    p.add_argument("--image", default="busybox", help="a local image (default busybox)")

    p = add("instruments", "the price of the instrumented locks and the stall detector")
    p.add_argument(
        "--acquisitions",
        type=positive(int),
        default=100_000,
        help="acquisitions per lock kind (default 100000)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = add("tui", "the TUI on a live devstack: first live table, key to effect, CPU")
    add_cluster_args(p, nodes=5)
    p.add_argument("--keys", type=positive(int), default=30, help="keys timed (default 30)")
    p.add_argument("--seconds", type=positive(float), default=20.0, help="CPU window (default 20)")
    p.add_argument("--refresh", type=positive(float), default=None, help="the TUI's poll interval")

    p = add("cli", "how soon each devstack verb prints its first line")
    add_cluster_args(p, nodes=3)
    p.add_argument("--runs", type=positive(int), default=20, help="runs per verb (default 20)")

    p = add("output", "what a job printing 10 MB/s, streamed live, costs the jobs beside it")
    add_cluster_args(
        p,
        nodes=2,
        settle=10.0,
        reuse="use the devstack running at --state-dir (at least 2 nodes)",
    )
    p.add_argument("--jobs", type=positive(int), default=10, help="other jobs per way (10)")
    p.add_argument("--rounds", type=positive(int), default=2, help="rounds of the 3 ways (2)")
    p.add_argument(
        "--mb-per-s", type=positive(float), default=10.0, help="the chatty job's output (10)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the ways' order per round (0)")
    p.add_argument("--image", default="busybox:latest", help="image of every job")

    p = add("cluster", "ready time, memory and idle CPU of an N-node devstack")
    add_cluster_args(p, nodes=5, settle=15.0, reuse=None)
    p.add_argument(
        "--seconds", type=positive(float), default=30.0, help="idle CPU window (default 30)"
    )

    p = add("bids", "bids per job and time to bids on a real devstack (noop jobs)")
    add_cluster_args(
        p,
        nodes=10,
        settle=20.0,
        reuse="use the devstack running at --state-dir (ignores --nodes and --bidder)",
    )
    p.add_argument("--jobs", type=positive(int), default=100, help="jobs (default 100)")
    p.add_argument("--concurrency", type=positive(int), default=1)
    p.add_argument("--bidder", choices=BIDDERS, default=DEFAULT_BIDDER)
    p.add_argument("--rate", type=positive(float), default=5.0, help="jobs per second (default 5)")

    p = add("chaos", "jobs while nodes are killed and restarted: outcomes, retries, results")
    add_cluster_args(p, nodes=20)
    add_job_stream_args(
        p,
        jobs=1000,
        rate=5.0,
        settle_why=f": the jobs' {CHAOS_JOB_TIMEOUT_S:g}s timeout and queue timeout, the 30s"
        " more a job whose node died unheard waits for its results, and a margin",
    )
    p.add_argument(
        "--kill-every",
        type=positive(float),
        default=10.0,
        metavar="S",
        help="seconds between kills (default 10)",
    )
    p.add_argument(
        "--pause",
        type=positive(float, zero=True),
        default=3.0,
        help="seconds a killed node stays down (default 3)",
    )
    p.add_argument(
        "--max-kills", type=positive(int), default=None, help="stop killing after this many"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random victims (0)")

    p = add("partition", "jobs on both sides of a host cut off and healed: outcomes, results")
    add_cluster_args(p, nodes=9, hosts=3)
    add_job_stream_args(p, jobs=150, rate=2.0)
    p.add_argument(
        "--host",
        default=None,
        help="the host to cut off: an index or host-N (default the last host)",
    )
    p.add_argument(
        "--cut-after",
        type=positive(float, zero=True),
        default=15.0,
        metavar="S",
        help="seconds into the submissions the host is cut off (default 15)",
    )
    p.add_argument(
        "--partition",
        type=positive(float),
        default=30.0,
        metavar="S",
        help="seconds the host stays cut off (default 30)",
    )
    p.add_argument("--concurrency", type=positive(int), default=1, help="runs per job (1)")

    p = add("byzantine", "forged results against each verification policy: outcomes and cost")
    p.add_argument("--nodes", type=positive(int), default=50, help="nodes (default 50)")
    p.add_argument(
        "--bad-actors", type=positive(int), default=5, help="of them, forging (default 5)"
    )
    add_forgery_args(p)
    p.add_argument("--jobs", type=positive(int), default=1000, help="jobs per policy (1000)")
    p.add_argument(
        "--rate", type=positive(float), default=10.0, help="jobs per second, all policies (10)"
    )
    p.add_argument("--concurrency", type=positive(int), default=3, help="runs per job (3)")
    p.add_argument(
        "--policies",
        type=policy_list,
        default=list(BYZANTINE_POLICIES),
        help=f"comma-separated, of {', '.join(BYZANTINE_POLICIES)} (default all)",
    )
    p.add_argument(
        "--requesters",
        type=positive(int),
        default=2,
        help="honest nodes each policy submits to, its own (default 2)",
    )
    p.add_argument(
        "--settle",
        type=positive(float),
        default=120.0,
        help="seconds after the last submission for every job to end (default 120)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = add("executor", "DockerExecutor.run vs the Docker SDK and CLI, per phase")
    p.add_argument("--rounds", type=positive(int), default=30, help="measured rounds (default 30)")
    p.add_argument(
        "--image", default="busybox:latest", help="a local image (default busybox:latest)"
    )
    p.add_argument(
        "--network",
        action="store_true",
        help="give the executor's container Docker's default bridge network, as the SDK"
        " and CLI runs have (default: none, as jobs that do not ask for one)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = add("load", "bursts of jobs: throughput, latency, CPU and messages per job, contention")
    add_cluster_args(p, nodes=10, settle=20.0)
    p.add_argument("--jobs", type=positive(int), default=500, help="jobs per step (default 500)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--rate", type=positive(float), help="jobs per second (default 10)")
    group.add_argument("--rates", type=rates, help="step the rate up: 20,40,80,160")
    p.add_argument("--engine", choices=["noop", "docker"], default="noop")
    p.add_argument("--image", default="busybox:latest", help="image of docker jobs")
    p.add_argument("--concurrency", type=positive(int), default=1, help="nodes per job (1)")
    p.add_argument(
        "--docker-clients",
        type=counts,
        default=[1, 2, 4, 8],
        help="parallel SDK clients when measuring Docker alone (default 1,2,4,8)",
    )
    p.add_argument("--top", type=positive(int), default=8, help="rows per table (default 8)")

    p = add(
        "publish",
        "verification and publication latency per shard, and a big result's transfer",
    )
    add_cluster_args(p, nodes=50, settle=20.0)
    p.add_argument("--jobs", type=positive(int), default=50, help="jobs (default 50)")
    p.add_argument("--rate", type=positive(float), default=0.5, help="jobs per second (0.5)")
    p.add_argument("--concurrency", type=positive(int), default=3, help="runs per job (3)")
    p.add_argument(
        "--size-mb",
        type=positive(int, zero=True),
        default=50,
        help="MiB the transfer job writes (default 50; 0 skips the transfer)",
    )

    p = add("shards", "one sharded job's wall time on clusters of growing size")
    p.add_argument(
        "--nodes", type=cluster_sizes, default=[1, 5], help="cluster sizes (default 1,5)"
    )
    p.add_argument("--files", type=positive(int), default=40, help="input files (default 40)")
    p.add_argument("--batch", type=positive(int), default=4, help="files per shard (default 4)")
    p.add_argument("--repeat", type=positive(int), default=3, help="runs per size (default 3)")
    p.add_argument("--file-kb", type=positive(int), default=1024, help="KiB per file (1024)")
    p.add_argument(
        "--work",
        default=SHARDS_WORK,
        help="what each shard runs (sh -c); it must print the /inputs path of each file it"
        " read, for the check that every file is covered once (default: word count and"
        " SHA-256 of each, also checked against what this machine computes)",
    )
    p.add_argument(
        "--settle",
        type=positive(float, zero=True),
        default=5.0,
        help="seconds to wait after each devstack is ready (default 5)",
    )
    p.add_argument(
        "--slots",
        type=positive(int),
        default=1,
        help="shards each node runs at once (default 1: every node stands for a one-core"
        " machine, as all the nodes share this machine's cores)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
