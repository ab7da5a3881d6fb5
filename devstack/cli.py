"""``devstack``: run a local py-bacalhau cluster and talk to it.

Exit status: 0 on success, 1 when the operation failed (the message says why),
2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack import jobs
from devstack import state as st
from devstack.client import NodeApiError, NodeClient
from devstack.cluster import ClusterError, UpOptions
from devstack.state import ClusterState, StateError
from node.argtypes import add_instrument_args, positive
from node.bidder import BIDDERS, DEFAULT_BIDDER
from node.content import ContentError
from node.publishers import PUBLISHERS
from node.requester import DEFAULT_DISPATCH, DISPATCHES
from node.sharding import INPUTS_ROOT, InputError, parse_input_arg
from node.verifiers import VERIFIERS

_positive = positive(int)


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


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _cluster(args: argparse.Namespace) -> ClusterState:
    cluster = st.load(args.state_dir)
    if cluster is None:
        raise ClusterError(
            f"no devstack is running (no {st.state_path(args.state_dir)});"
            " start one with `devstack up`"
        )
    return cluster


# -- up / down / restart ---------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from devstack import cluster as launcher

    started = time.monotonic()
    options = UpOptions(
        nodes=args.nodes,
        state_dir=args.state_dir,
        bidder=args.bidder,
        dispatch=args.dispatch,
        slots=args.slots,
        lock_warn_ms=args.lock_warn_ms,
        stall_ms=args.stall_ms,
        bad_actors=args.bad_actors,
    )
    cluster = launcher.up(options)
    print(
        f"\npy-bacalhau devstack ready: {len(cluster.nodes)} nodes in"
        f" {time.monotonic() - started:.1f}s (state in {st.state_path(args.state_dir)})"
    )
    for node in cluster.nodes:
        print(f"  {node.name:>8}  {node.api}  {node.peer_id}")
    print("\ntry: devstack submit --wait busybox -- echo hello")
    if args.detach:
        print("detached; stop it with `devstack down`")
        return 0
    if sys.stdin.isatty() and sys.stdout.isatty():
        return _up_tui(args)
    print("Ctrl+C (or `devstack down`) stops it")
    launcher.wait_foreground(args.state_dir)
    return 0


def _up_tui(args: argparse.Namespace) -> int:
    """Open the TUI in its own process (``python -m tui --ask-stop``) over the cluster
    this launcher started; stop the cluster if the user says so on quitting, else leave
    it running. If the TUI fails, stay in the foreground as without it."""
    import signal
    import subprocess

    from devstack import cluster as launcher
    from tui import STOP_CLUSTER_EXIT

    argv = [sys.executable, "-m", "tui", "--state-dir", str(args.state_dir), "--ask-stop"]
    if args.refresh is not None:
        argv += ["--refresh", str(args.refresh)]

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    tui = subprocess.Popen(argv)
    try:
        code = tui.wait()
    except KeyboardInterrupt:
        tui.terminate()
        tui.wait()
        code = STOP_CLUSTER_EXIT
    if code == STOP_CLUSTER_EXIT:
        cluster = st.load(args.state_dir)
        print("stopping the devstack ...")
        launcher.down(args.state_dir)
        print(f"stopped {len(cluster.nodes) if cluster else 0} nodes")
        return 0
    if code == 0:
        print("the devstack keeps running: `devstack tui` shows it again, `devstack down` stops it")
        return 0
    print(
        f"the TUI exited with status {code}; the devstack keeps running."
        " Ctrl+C (or `devstack down`) stops it",
        file=sys.stderr,
    )
    launcher.wait_foreground(args.state_dir)
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    _cluster(args)  # a clear error if no devstack is running
    from tui.app import TuiFailed, run_tui

    try:
        run_tui(args.state_dir, refresh=args.refresh)
    except TuiFailed as exc:
        print(f"devstack tui: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from devstack import cluster as launcher

    cluster = st.load(args.state_dir)
    if not launcher.down(args.state_dir):
        print("no devstack is running")
        return 0
    print(f"stopped {len(cluster.nodes) if cluster else 0} nodes")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    from devstack import cluster as launcher

    overrides = args.node_options[1:] if args.node_options[:1] == ["--"] else args.node_options
    entry = launcher.restart_node(args.state_dir, args.node, overrides)
    print(f"restarted {entry.name} (pid {entry.pid}) at {entry.api}")
    return 0


# -- status / logs ---------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    rows = []
    for node in cluster.nodes:
        row: dict[str, Any] = {
            "name": node.name,
            "pid": node.pid,
            "peer_id": node.peer_id,
            "api": node.api,
            "alive": st.is_alive(node.pid, node.started),
            "bad_actor": node.bad_actor,
        }
        if row["alive"]:
            try:
                with NodeClient(node.api) as client:
                    info = client.info()
                row.update(
                    healthy=True,
                    gossip_peers=info["peers"]["topic"],
                    mesh=info["peers"]["mesh"],
                    network_size=info["network_size"],
                    jobs=info["store"]["jobs"],
                    dropped=sum(info["transport"]["dropped"].values()),
                )
            except NodeApiError:
                row["healthy"] = False
        rows.append(row)
    if args.json:
        _print_json({"nodes": rows, "state_file": str(st.state_path(args.state_dir))})
        return 0
    up = sum(1 for r in rows if r.get("healthy"))
    print(f"{up}/{len(rows)} nodes healthy")
    print(
        f"{'node':>8} {'pid':>7} {'api':<24} {'peers':>5} {'mesh':>4} {'size':>4} {'jobs':>5}"
        f" {'dropped':>7}  peer id"
    )
    for r in rows:
        if r.get("healthy"):
            print(
                f"{r['name']:>8} {r['pid']:>7} {r['api']:<24} {r['gossip_peers']:>5}"
                f" {r['mesh']:>4} {r['network_size']:>4} {r['jobs']:>5} {r['dropped']:>7}"
                f"  {r['peer_id']}{'  (bad actor)' if r['bad_actor'] else ''}"
            )
        else:
            what = "not answering" if r["alive"] else "not running"
            print(f"{r['name']:>8} {r['pid']:>7} {r['api']:<24} {what}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    nodes = [st.find_node(cluster, args.node)] if args.node else cluster.nodes
    for node in nodes:
        path = Path(node.log_file)
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        for line in lines[-args.lines :]:
            print(f"{node.name}: {line}" if len(nodes) > 1 else line)
    return 0


# -- jobs ------------------------------------------------------------------------


def build_spec(args: argparse.Namespace, inputs: list[dict[str, str]]) -> dict[str, Any]:
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    spec: dict[str, Any] = {
        "engine": args.engine,
        "image": args.image,
        "command": command,
        "env": dict(args.env),
        "timeout": args.timeout,
        "deal": {"concurrency": args.concurrency, "confidence": args.confidence},
        "verifier": args.verifier,
        "publisher": args.publisher,
        "step": args.step,
        "inputs": inputs,
    }
    if args.entrypoint:
        spec["entrypoint"] = [args.entrypoint]
    if args.sharding_glob_pattern is not None:
        spec["sharding"] = {
            "glob_pattern": args.sharding_glob_pattern,
            "batch_size": args.sharding_batch_size,
        }
    elif args.sharding_batch_size != 1:
        raise ClusterError("--sharding-batch-size needs --sharding-glob-pattern")
    return spec


def _add_tree(client: NodeClient, path: str) -> str:
    """Add the file or directory at ``path`` to the node's content store; its CID."""
    from node.content.tarball import path_entries, tar_stream

    name = os.path.basename(os.path.abspath(path)) or "root"
    os.lstat(path)  # a clear error for a path that is not there
    return client.add_content(tar_stream(path_entries(path, name)))


def _inputs(args: argparse.Namespace, client: NodeClient) -> list[dict[str, str]]:
    """The spec's inputs: ``-i CID[:/path]`` as given, ``--input-dir DIR[:/path]``
    added to the submitting node first."""
    inputs = [{"cid": cid, "path": path} for cid, path in args.input]
    for text in args.input_dir:
        local, sep, mount = text.partition(":/")
        try:
            cid = _add_tree(client, local)
        except (OSError, ContentError) as exc:
            raise ClusterError(f"--input-dir {local}: {exc}") from None
        inputs.append({"cid": cid, "path": "/" + mount if sep else INPUTS_ROOT})
    return inputs


def cmd_submit(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
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


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _duration(record: dict[str, Any]) -> str:
    if record["state"] not in jobs.TERMINAL:
        return "-"
    return f"{record['updated_at'] - record['job']['created_at']:.2f}s"


def _on_requester(args: argparse.Namespace) -> tuple[str, NodeClient]:
    """The full id of ``args.job`` and a client of its requester's API."""
    cluster = _cluster(args)
    answer = jobs.describe(cluster, args.job)
    requester = st.node_by_peer(cluster, answer["requester"])
    if requester is None:
        raise ClusterError(f"the job's requester {answer['requester']} is not in this devstack")
    return answer["job"]["job"]["id"], NodeClient(requester.api)


def cmd_step(args: argparse.Namespace) -> int:
    job_id, requester = _on_requester(args)
    with requester as client:
        opened = client.step(job_id)["opened"]
    print(f"job {job_id}: opened the {opened} gate")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    job_id, requester = _on_requester(args)
    with requester as client:
        client.cancel(job_id)
    print(f"job {job_id}: cancelled")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    records = jobs.list_jobs(_cluster(args), limit=args.limit)
    if args.json:
        _print_json({"jobs": records})
        return 0
    print(f"{'job':<36} {'state':<10} {'c':>2} {'engine':<6} {'image':<16} {'age':>5} {'took':>7}")
    now = time.time()
    for r in records:
        spec = r["job"]["spec"]
        print(
            f"{r['job']['id']:<36} {r['state']:<10} {spec['deal']['concurrency']:>2}"
            f" {spec['engine']:<6} {spec['image'][:16]:<16}"
            f" {_age(now - r['job']['created_at']):>5} {_duration(r):>7}"
        )
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    answer = jobs.describe(_cluster(args), args.job)
    if args.json:
        _print_json(answer)
        return 0
    record = answer["job"]
    job, spec = record["job"], record["job"]["spec"]
    created = job["created_at"]
    print(f"job        {job['id']}")
    print(f"state      {record['state']}" + (f"  ({record['reason']})" if record["reason"] else ""))
    print(f"requester  {job['requester']}")
    print(
        f"spec       {spec['engine']} {spec['image']} {' '.join(spec['command'])}"
        f"  concurrency={spec['deal']['concurrency']} verifier={spec['verifier']}"
        f" publisher={spec['publisher']}"
    )
    print(f"created    {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(created))}Z")
    for gate in answer.get("gates", []):
        behind = " ".join(f"{k}={v}" for k, v in gate.items() if k not in ("name", "shard"))
        print(
            f"gate       shard {gate['shard']} waiting at {gate['name']}: {behind}"
            f"  (`devstack step {job['id']}`)"
        )
    print(f"shards     {job['shards']}")
    for shard in answer.get("shards", []):
        published = shard["cid"] or "not published"
        print(f"  {shard['shard']:>3}  {published}  {len(shard['providers'])} provider(s)")
    print("executions")
    for e in record["executions"]:
        extra = e.get("reason") or e.get("result_url") or ""
        print(f"  {e['shard']:>3}  {e['node']}  {e['state']:<16} {extra}")
    print("events")
    for e in answer["events"]:
        stamp = time.strftime("%H:%M:%S", time.gmtime(e["at"])) + f".{int(e['at'] % 1 * 1000):03d}"
        peer = e["detail"].get("peer", "")
        who = f" {peer[-8:]}" if peer else ""
        detail = {k: v for k, v in e["detail"].items() if k not in ("peer", "state")}
        extra = " ".join(f"{k}={v}" for k, v in detail.items())
        shard = "" if e.get("shard") is None else f"#{e['shard']}"
        print(
            f"  {stamp}Z  +{(e['at'] - created) * 1000:8.1f}ms  {e['node'][-8:]} {shard:>4}"
            f"  {e['kind']:<16}{who} {extra}"
        )
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    answer = jobs.describe(cluster, args.job)
    out = args.output or Path(f"job-{args.job[:8]}")
    try:
        paths = jobs.fetch_shards(cluster, answer, out, via=args.node, timeout=args.timeout)
    except (OSError, ContentError) as exc:  # a shard's DIR exists, or an unsafe archive
        print(f"devstack get: {exc}", file=sys.stderr)
        return 1
    if not paths:
        state = answer["job"]["state"]
        raise ClusterError(f"job {args.job} has no published results (state {state})")
    for path in paths:
        print(f"{path}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    node = st.find_node(_cluster(args), args.node)
    try:
        with NodeClient(node.api) as client:
            cid = _add_tree(client, args.path)
    except (OSError, ContentError) as exc:  # a path that cannot be read or added
        print(f"devstack add: {exc}", file=sys.stderr)
        return 1
    print(cid)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    node = st.find_node(cluster, args.node)
    providers = [st.find_node(cluster, args.provider).peer_id] if args.provider else []
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with NodeClient(node.api) as client:
            client.fetch_content(args.cid, args.output, providers=providers, timeout=args.timeout)
    except (OSError, ContentError) as exc:  # DIR exists, or an archive unsafe to unpack
        print(f"devstack fetch: {exc}", file=sys.stderr)
        return 1
    print(args.output)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from devstack import bench

    return bench.run(args)


def cmd_profile(args: argparse.Namespace) -> int:
    from devstack import profile

    if not 1 <= args.seconds <= 300:
        raise ClusterError(f"--seconds must be between 1 and 300, got {args.seconds}")
    cluster = _cluster(args)
    out_dir = args.state_dir / "profiles"
    if args.memory:
        memory = profile.memory_profile_nodes(cluster, args.nodes, args.seconds, out_dir)
        print(profile.format_memory_profiles(memory, args.seconds))
    else:
        cpu = profile.profile_nodes(cluster, args.nodes, args.seconds, out_dir, args.clock)
        print(profile.format_profiles(cpu, args.seconds))
    return 0


def cmd_locks(args: argparse.Namespace) -> int:
    from devstack import locks

    cluster = _cluster(args)
    found = locks.collect(cluster, args.nodes)
    if args.seconds is not None:
        time.sleep(args.seconds)
        found = locks.since(locks.collect(cluster, args.nodes), found)
        print(f"what happened over {args.seconds:g}s (maxima since each node started):")
    print(locks.format_contention(found, args.top))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from devstack import simulate

    return simulate.run(args)


# -- parser ----------------------------------------------------------------------


def _add_refresh_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--refresh",
        type=positive(float),
        default=None,
        metavar="SECONDS",
        help="seconds between the TUI's polls of every node (default 1, 2 above 20 nodes)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="devstack", description="A local py-bacalhau cluster.")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=st.default_state_dir(),
        help="where cluster.json, logs and data live (default ./.devstack or $DEVSTACK_DIR)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=fn)
        return p

    p = add("up", cmd_up, "start N node processes and wait until they form one network")
    p.add_argument("--nodes", type=_positive, default=5)
    p.add_argument("--detach", action="store_true", help="return once ready; stop with `down`")
    p.add_argument(
        "--bidder",
        choices=sorted(BIDDERS),
        default=DEFAULT_BIDDER,
        help=f"bidder of every node (default {DEFAULT_BIDDER})",
    )
    p.add_argument(
        "--dispatch",
        choices=DISPATCHES,
        default=DEFAULT_DISPATCH,
        help="how requesters find bidders: offers to ranked nodes, gossip as the fallback"
        f" (offer), or gossip alone (default {DEFAULT_DISPATCH})",
    )
    p.add_argument("--slots", type=_positive, default=None, help="shards each node runs at once")
    add_instrument_args(p)
    p.add_argument(
        "--bad-actors",
        type=positive(int, zero=True),
        default=0,
        help="this many nodes (the last ones) forge their results, to show the verifier",
    )
    _add_refresh_arg(p)

    p = add("tui", cmd_tui, "watch the running devstack in the terminal UI")
    _add_refresh_arg(p)

    add("down", cmd_down, "stop every node and remove every container of the devstack")

    p = add("restart", cmd_restart, "stop one node and start it again on the same data")
    p.add_argument("node", help="index, node-N or part of a peer id")
    p.add_argument(
        "node_options",
        nargs=argparse.REMAINDER,
        metavar="-- OPTION ...",
        help="more `bacalhau-node run` options for this node, after --, e.g. -- --cpu 0.5",
    )

    p = add("status", cmd_status, "health, peers and jobs of every node")
    p.add_argument("--json", action="store_true")

    p = add("logs", cmd_logs, "print node logs (one node, or all)")
    p.add_argument("node", nargs="?")
    p.add_argument("-n", "--lines", type=_positive, default=50)

    p = add("submit", cmd_submit, "submit a job: devstack submit IMAGE -- CMD...")
    p.add_argument("image")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command and its arguments")
    p.add_argument("--concurrency", type=_positive, default=1)
    p.add_argument("--confidence", type=int, default=0)
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
    p.add_argument("--sharding-batch-size", type=_positive, default=1, metavar="B")
    p.add_argument("--engine", default="docker", help="docker (default) or noop")
    p.add_argument("--entrypoint", default=None)
    p.add_argument("--env", type=_env_pair, action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds the job may run")
    p.add_argument("--node", default="0", help="node to submit to (its requester)")
    p.add_argument("--wait", action="store_true", help="wait for the end, print stdout")
    p.add_argument("--wait-timeout", type=float, default=900.0)
    p.add_argument("--id-only", action="store_true", help="print only the job id")

    p = add("list", cmd_list, "jobs requested on any node, newest first")
    p.add_argument("--limit", type=_positive, default=50)
    p.add_argument("--json", action="store_true")

    p = add("step", cmd_step, "open the next gate of a job submitted with --step")
    p.add_argument("job")

    p = add("cancel", cmd_cancel, "stop a job: its containers are stopped, it ends cancelled")
    p.add_argument("job")

    p = add("describe", cmd_describe, "a job's state, executions and every event")
    p.add_argument("job")
    p.add_argument("--json", action="store_true")

    p = add("get", cmd_get, "write each shard's published results to DIR/shard-K")
    p.add_argument("job")
    p.add_argument("-o", "--output", type=Path, default=None, help="default ./job-<id>")
    p.add_argument(
        "--node",
        default=None,
        help="node that fetches ipfs results over bitswap (default: one that does not hold them)",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds each fetch may take")

    p = add("add", cmd_add, "add a file or directory to a node's store; print its CID")
    p.add_argument("path")
    p.add_argument("--node", default="0", help="node to add to (default 0)")

    p = add("fetch", cmd_fetch, "write the tree CID to DIR, as a node has it or fetches it")
    p.add_argument("cid")
    p.add_argument("-o", "--output", type=Path, required=True, help="must not exist")
    p.add_argument("--node", default="0", help="node to ask (default 0)")
    p.add_argument(
        "--from",
        dest="provider",
        default=None,
        help="node the asked node fetches it from over bitswap (index, node-N or peer id)",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds the fetch may take")

    from devstack.bench import add_bench_parser

    add_bench_parser(add("bench", cmd_bench, "benchmarks that print figures"))

    from devstack.profile import add_profile_parser

    add_profile_parser(
        add("profile", cmd_profile, "CPU (pyinstrument) or memory (--memory) profiles of nodes")
    )

    from devstack.locks import add_locks_parser

    add_locks_parser(add("locks", cmd_locks, "the cluster's most contended locks and loop stalls"))

    from devstack.simulate import add_simulate_parser

    add_simulate_parser(
        add("simulate", cmd_simulate, "simulate bidding on N nodes with the real bidders")
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (
        args.command == "submit"
        and not [a for a in args.cmd if a != "--"]
        and args.engine == "docker"
    ):
        parser.error("submit needs a command after the image: devstack submit IMAGE -- CMD...")
    try:
        return args.func(args)
    except (ClusterError, StateError, NodeApiError, jobs.JobNotFound, TimeoutError) as exc:
        print(f"devstack {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `devstack status | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
