"""``devstack submit``: a job spec from the command line, sent to a node."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from devstack import jobs
from devstack import state as st
from devstack.client import NodeClient
from devstack.errors import ClusterError, UsageError
from devstack.verbs import running_cluster
from devstack.verbs.content import add_tree
from node.argtypes import positive
from node.models import (
    INPUTS_ROOT,
    MAX_EXTRA_RUNS,
    MAX_MARGIN,
    PUBLISHERS,
    VERIFIERS,
    Deal,
    InputError,
    InputSource,
    JobSpec,
    Sharding,
    parse_input_arg,
)


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _input_arg(text: str) -> tuple[str, str]:
    try:
        return parse_input_arg(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _at_most(parse: Callable[[str], int | float], ceiling: float) -> Callable[[str], int | float]:
    """An argparse type: what ``parse`` takes (e.g. :func:`positive`), but at most
    ``ceiling``."""

    def bounded(text: str) -> int | float:
        value = parse(text)
        if value > ceiling:
            raise argparse.ArgumentTypeError(f"must be at most {ceiling:g}, got {text}")
        return value

    return bounded


_DEAL = Deal()


def submit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command and its arguments")
    p.add_argument("--concurrency", type=positive(int), default=1)
    p.add_argument("--confidence", type=int, default=0)
    p.add_argument(
        "--margin",
        type=_at_most(positive(int), MAX_MARGIN),
        default=_DEAL.margin,
        metavar="N",
        help="votes the leading result needs over the next when runs differ "
        f"(1: plain majority; default {_DEAL.margin})",
    )
    p.add_argument(
        "--max-extra-runs",
        type=_at_most(positive(int, zero=True), MAX_EXTRA_RUNS),
        default=_DEAL.max_extra_runs,
        metavar="N",
        help="runs on fresh nodes a shard may add to reach the margin or for a spot check "
        f"(default {_DEAL.max_extra_runs})",
    )
    p.add_argument(
        "--spot-check",
        type=_at_most(positive(float, zero=True), 1),
        default=_DEAL.spot_check,
        metavar="P",
        help="the chance that a unanimous result is checked by one more fresh node "
        f"(0..1, default {_DEAL.spot_check:g})",
    )
    p.add_argument(
        "--check-newcomers",
        action="store_true",
        help="check a unanimous result when none of its nodes has a record with the requester",
    )
    p.add_argument(
        "--no-credibility",
        dest="credibility",
        action="store_false",
        help="neither shun nodes caught forging lately nor pick checkers by their record",
    )
    p.add_argument(
        "--step",
        action="store_true",
        help="pause before the verdict and before publication (`devstack step JOB`)",
    )
    p.add_argument(
        "--verifier",
        choices=sorted(VERIFIERS),
        default="noop",
        help="noop (accept every result) or deterministic (equal results must agree)",
    )
    p.add_argument(
        "--publisher",
        choices=PUBLISHERS,
        default="ipfs",
        help="ipfs (default: blocks served over bitswap) or noop (stays on the node)",
    )
    p.add_argument(
        "-i",
        "--input",
        type=_input_arg,
        action="append",
        default=[],
        metavar="CID[:/inputs/PATH]",
        help="published content to mount read-only (default at /inputs)",
    )
    p.add_argument(
        "--input-dir",
        action="append",
        default=[],
        metavar="DIR[:/inputs/PATH]",
        help="add a local file or directory to the submitting node, then mount it",
    )
    p.add_argument(
        "--sharding-glob-pattern",
        default=None,
        metavar="GLOB",
        help="split the input entries matching GLOB (e.g. '/inputs/*.txt') into shards",
    )
    p.add_argument("--sharding-batch-size", type=positive(int), default=1, metavar="B")
    p.add_argument("--engine", default="docker", help="docker (default) or noop")
    p.add_argument("--entrypoint", default=None)
    p.add_argument("--env", type=_env_pair, action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds the job may run")
    p.add_argument("--node", default="0", help="node to submit to (its requester)")
    p.add_argument("--wait", action="store_true", help="wait for the end, print stdout")
    p.add_argument("--wait-timeout", type=float, default=900.0)
    p.add_argument("--id-only", action="store_true", help="print only the job id")


def _command(args: argparse.Namespace) -> list[str]:
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if args.engine == "docker" and not command:
        raise UsageError("submit needs a command after the image: devstack submit IMAGE -- CMD...")
    return command


def build_spec(args: argparse.Namespace, inputs: list[InputSource]) -> JobSpec:
    """The job ``devstack submit``'s options describe (the node checks it)."""
    command = _command(args)
    sharding = None
    if args.sharding_glob_pattern is not None:
        sharding = Sharding(
            glob_pattern=args.sharding_glob_pattern, batch_size=args.sharding_batch_size
        )
    elif args.sharding_batch_size != 1:
        raise ClusterError("--sharding-batch-size needs --sharding-glob-pattern")
    return JobSpec(
        engine=args.engine,
        image=args.image,
        command=command,
        entrypoint=[args.entrypoint] if args.entrypoint else None,
        env=dict(args.env),
        timeout=args.timeout,
        deal=Deal(
            concurrency=args.concurrency,
            confidence=args.confidence,
            margin=args.margin,
            max_extra_runs=args.max_extra_runs,
            spot_check=args.spot_check,
            check_newcomers=args.check_newcomers,
            credibility=args.credibility,
        ),
        verifier=args.verifier,
        publisher=args.publisher,
        step=args.step,
        inputs=inputs,
        sharding=sharding,
    )


def _inputs(args: argparse.Namespace, client: NodeClient) -> list[InputSource]:
    """The spec's inputs: ``-i CID[:/path]`` as given, ``--input-dir DIR[:/path]``
    added to the submitting node first."""
    inputs = [InputSource(cid=cid, path=path) for cid, path in args.input]
    for text in args.input_dir:
        from node.content import ContentError  # here: only --input-dir needs it

        local, sep, mount = text.partition(":/")
        try:
            cid = add_tree(client, local)
        except (OSError, ContentError) as exc:
            raise ClusterError(f"--input-dir {local}: {exc}") from None
        inputs.append(InputSource(cid=cid, path="/" + mount if sep else INPUTS_ROOT))
    return inputs


def submit(args: argparse.Namespace) -> int:
    _command(args)  # a usage error before anything is sent
    cluster = running_cluster(args.state_dir)
    node = st.find_node(cluster, args.node)
    with NodeClient(node.api) as client:
        answer = client.submit(build_spec(args, _inputs(args, client)))
    job_id = answer["id"]
    if args.id_only:
        print(job_id)
    elif not args.wait:
        print(f"job {job_id} submitted to {node.name}; `devstack describe {job_id}`")
    if not args.wait:
        return 0
    final = jobs.wait(node.api, job_id, timeout=args.wait_timeout)
    state = final["job"]["state"]
    if state != "completed":
        print(f"job {job_id} ended {state}: {final['job']['reason']}", file=sys.stderr)
        return 1
    for stdout in jobs.shard_stdouts(cluster, final):
        sys.stdout.write(stdout)
    return 0
