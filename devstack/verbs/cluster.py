"""``devstack up``, ``tui``, ``down``, ``restart``, ``status`` and ``logs``: the
cluster's processes, and what each node says of itself."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devstack import state as st
from devstack.errors import UsageError
from devstack.verbs import print_json, running_cluster
from node.argtypes import (
    BIDDERS,
    DEFAULT_BIDDER,
    DEFAULT_DISPATCH,
    DISPATCHES,
    add_forgery_args,
    add_instrument_args,
    positive,
)

if TYPE_CHECKING:
    from devstack import netns

#: What ``status`` shows for a figure a node does not report.
MISSING = "-"
#: ``caught 12, excluded 3``: the credibility column's width in ``status``.
CREDIBILITY_WIDTH = 21


def _add_refresh_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--refresh",
        type=positive(float),
        default=None,
        metavar="SECONDS",
        help="seconds between the TUI's polls of every node (default 1, 2 above 20 nodes)",
    )


# -- up / tui / down / restart ------------------------------------------------------


def up_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=positive(int), default=5)
    p.add_argument("--detach", action="store_true", help="return once ready; stop with `down`")
    p.add_argument(
        "--bidder",
        choices=BIDDERS,
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
    p.add_argument(
        "--slots", type=positive(int), default=None, help="shards each node runs at once"
    )
    add_instrument_args(p)
    p.add_argument(
        "--bad-actors",
        type=positive(int, zero=True),
        default=0,
        help="this many nodes (the last ones) forge their results, to show the verifier",
    )
    add_forgery_args(p)
    p.add_argument(
        "--hosts",
        type=positive(int, zero=True),
        default=0,
        help="spread the nodes over this many simulated hosts: network namespaces of the"
        " devstack's own on a private /24, cut off and healed with `partition`/`heal`"
        " (needs root; default 0: every node on 127.0.0.1)",
    )
    _add_refresh_arg(p)


def up(args: argparse.Namespace) -> int:
    from devstack import cluster as launcher

    started = time.monotonic()
    options = launcher.UpOptions(
        nodes=args.nodes,
        state_dir=args.state_dir,
        bidder=args.bidder,
        dispatch=args.dispatch,
        slots=args.slots,
        lock_warn_ms=args.lock_warn_ms,
        stall_ms=args.stall_ms,
        bad_actors=args.bad_actors,
        collude=args.collude,
        bad_actor_rate=args.bad_actor_rate,
        hosts=args.hosts,
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
        return _up_tui(args.state_dir, args.refresh)
    print("Ctrl+C (or `devstack down`) stops it")
    launcher.wait_foreground(args.state_dir)
    return 0


def _up_tui(state_dir: Path, refresh: float | None) -> int:
    """Open the TUI in its own process (``python -m tui --ask-stop``, the same
    :func:`tui.__main__.main` as ``devstack tui``) over the cluster this launcher
    started; stop the cluster if the user says so on quitting, else leave it running.
    If the TUI fails, stay in the foreground as without it."""
    import signal
    import subprocess

    from devstack import cluster as launcher
    from tui import STOP_CLUSTER_EXIT
    from tui.__main__ import tui_argv

    argv = [sys.executable, "-m", "tui", *tui_argv(state_dir, refresh, ask_stop=True)]

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
        cluster = st.load(state_dir)
        print("stopping the devstack ...")
        launcher.down(state_dir)
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
    launcher.wait_foreground(state_dir)
    return 0


def tui_arguments(p: argparse.ArgumentParser) -> None:
    _add_refresh_arg(p)


def tui(args: argparse.Namespace) -> int:
    running_cluster(args.state_dir)  # a clear error if no devstack is running
    from tui.__main__ import main, tui_argv

    return main(tui_argv(args.state_dir, args.refresh), prog="devstack tui")


def down(args: argparse.Namespace) -> int:
    from devstack import cluster as launcher

    cluster = st.load(args.state_dir)
    if not launcher.down(args.state_dir):
        print("no devstack is running")
        return 0
    print(f"stopped {len(cluster.nodes) if cluster else 0} nodes")
    return 0


def restart_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("node", help="index, node-N or part of a peer id")
    p.add_argument(
        "node_options",
        nargs=argparse.REMAINDER,
        metavar="-- OPTION ...",
        help="more `bacalhau-node run` options for this node, after --, e.g. -- --cpu 0.5",
    )


def restart(args: argparse.Namespace) -> int:
    from devstack import cluster as launcher

    overrides = args.node_options[1:] if args.node_options[:1] == ["--"] else args.node_options
    entry = launcher.restart_node(args.state_dir, args.node, overrides)
    print(f"restarted {entry.name} (pid {entry.pid}) at {entry.api}")
    return 0


# -- status / logs ---------------------------------------------------------------


def _hosts_status(state_dir: Path, cluster: st.ClusterState) -> dict[str, Any] | None:
    """The simulated hosts, each with its address, whether it is cut off and whether
    its API forwarder runs; None for a devstack without hosts."""
    from devstack import netns

    network = netns.load(state_dir)
    if network is None:
        return None
    cut = set(netns.cut_off(network))
    forwarding = {f.host for f in cluster.forwarders if st.is_alive(f.pid, f.started)}
    return {
        "subnet": network.subnet,
        "hosts": [
            {
                "name": h.name,
                "address": h.address,
                "netns": h.netns,
                "cut_off": h.name in cut,
                "forwarder": h.index in forwarding,
            }
            for h in network.hosts
        ],
    }


def status_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


def credibility_text(record: Mapping[str, Any] | None) -> str:
    """A node's record of the others as its requester, in a few words: ``caught K,
    excluded E`` (proposals caught differing from the accepted result; nodes offered
    no work for it now), or :data:`MISSING` for a node that reports none."""
    if not record:
        return MISSING
    return f"caught {record.get('caught', '?')}, excluded {record.get('excluded', '?')}"


def status_lines(rows: Sequence[Mapping[str, Any]], hosts: Mapping[str, Any] | None) -> list[str]:
    """What ``status`` prints of ``rows`` (one per node, as ``status --json`` gives
    them) and the simulated ``hosts`` (None without any)."""
    healthy = sum(1 for r in rows if r.get("healthy"))
    lines = [f"{healthy}/{len(rows)} nodes healthy"]
    if hosts:
        cut = [h["name"] for h in hosts["hosts"] if h["cut_off"]]
        lines.append(
            f"{len(hosts['hosts'])} hosts on {hosts['subnet']}"
            + (f"; cut off: {', '.join(cut)}" if cut else "")
        )
        for h in hosts["hosts"]:
            if not h["forwarder"]:
                name = h["name"]
                lines.append(
                    f"{name}'s API forwarder is not running: its nodes' APIs are out of reach"
                    " (`devstack restart` one of its nodes to start it again)"
                )
    lines.append(
        f"{'node':>8} {'pid':>7} {'api':<24} {'peers':>5} {'mesh':>4} {'size':>4} {'jobs':>5}"
        f" {'dropped':>7}  {'credibility':<{CREDIBILITY_WIDTH}}  peer id"
    )
    for r in rows:
        if r.get("healthy"):
            credibility = credibility_text(r.get("credibility"))
            lines.append(
                f"{r['name']:>8} {r['pid']:>7} {r['api']:<24} {r['gossip_peers']:>5}"
                f" {r['mesh']:>4} {r['network_size']:>4} {r['jobs']:>5} {r['dropped']:>7}"
                f"  {credibility:<{CREDIBILITY_WIDTH}}"
                f"  {r['peer_id']}{'  (bad actor)' if r['bad_actor'] else ''}"
                + (f"  host-{r['host']}" if r["host"] is not None else "")
            )
        else:
            what = "not answering" if r["alive"] else "not running"
            lines.append(f"{r['name']:>8} {r['pid']:>7} {r['api']:<24} {what}")
    return lines


def status(args: argparse.Namespace) -> int:
    from devstack.client import NodeApiError, NodeClient

    cluster = running_cluster(args.state_dir)
    rows = []
    for node in cluster.nodes:
        row: dict[str, Any] = {
            "name": node.name,
            "pid": node.pid,
            "peer_id": node.peer_id,
            "api": node.api,
            "alive": st.is_alive(node.pid, node.started),
            "bad_actor": node.bad_actor,
            "host": node.host,
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
                    # Its requester's record of the others: None from a node older than it.
                    credibility=(info.get("requester") or {}).get("credibility"),
                )
            except NodeApiError:
                row["healthy"] = False
        rows.append(row)
    hosts = _hosts_status(args.state_dir, cluster)
    if args.json:
        document = {"nodes": rows, "state_file": str(st.state_path(args.state_dir))}
        print_json({**document, "hosts": hosts} if hosts else document)
        return 0
    print("\n".join(status_lines(rows, hosts)))
    return 0


def logs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "target",
        nargs="?",
        metavar="NODE|JOB",
        help="a node (index, node-N or part of its peer id): its log; a job id: what the"
        " job prints (default: every node's log)",
    )
    p.add_argument("-n", "--lines", type=positive(int), default=None, help="a node's: default 50")
    p.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="then print each line as it is written (one node, or one job until it ends)",
    )
    job = p.add_argument_group("a job's output")
    job.add_argument("--stderr", action="store_true", help="its stderr only (default: both)")
    job.add_argument("--node", dest="from_node", metavar="NODE", help="from this node only")
    job.add_argument("--shard", type=positive(int, zero=True), default=None)


def logs(args: argparse.Namespace) -> int:
    cluster = running_cluster(args.state_dir)
    node = st.node_named(cluster, args.target) if args.target else None
    if args.target and node is None:
        if args.lines is not None:
            raise UsageError("--lines is for a node's log; a job's output is printed whole")
        from devstack.verbs.jobs import job_output

        return job_output(cluster, args.target, args)
    if args.stderr or args.from_node or args.shard is not None:
        raise UsageError(
            "--stderr, --node and --shard narrow a job's output: devstack logs JOB --stderr"
        )
    lines = 50 if args.lines is None else args.lines
    if args.follow:
        if node is None:
            raise UsageError("--follow follows one node: devstack logs NODE --follow")
        from devstack.client import NodeClient

        with NodeClient(node.api) as client:
            for line in client.follow_logs(min(lines, 5000)):
                print(line, flush=True)
        return 0
    nodes = [node] if node is not None else cluster.nodes
    for entry in nodes:
        path = Path(entry.log_file)
        written = path.read_text(errors="replace").splitlines() if path.exists() else []
        for line in written[-lines:]:
            print(f"{entry.name}: {line}" if len(nodes) > 1 else line)
    return 0


# -- partition / heal -----------------------------------------------------------------


def host_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("host", metavar="HOST", help="a simulated host: its index or host-N")


def _network_of(args: argparse.Namespace) -> netns.Network:
    """The running devstack's simulated hosts; UsageError if it has none."""
    from devstack import netns

    running_cluster(args.state_dir)
    network = netns.load(args.state_dir)
    if network is None:
        raise UsageError("this devstack has no hosts: start it with `devstack up --hosts K`")
    return network


def partition(args: argparse.Namespace) -> int:
    from devstack import netns

    host = netns.partition(_network_of(args), args.host)
    print(
        f"{host.name} ({host.address}) is cut off: its link is down (`devstack heal {host.index}`)"
    )
    return 0


def heal(args: argparse.Namespace) -> int:
    from devstack import netns

    host = netns.heal(_network_of(args), args.host)
    print(f"{host.name} ({host.address}) is back: its link is up")
    return 0
