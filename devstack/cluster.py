"""Bring a local cluster of real node processes up and down.

``up`` imports the node code once, freezes the heap and forks every node (as
gunicorn's preload does): cold imports would cost ~1 CPU-second per node, and the
forked nodes share the imported pages. Each node is its own session and process
group with its own log file, so Ctrl+C in the terminal reaches only the launcher,
which then takes the cluster down in order. ``down`` ends every node by its pid,
then removes every container the cluster's nodes started.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from devstack import netns
from devstack import state as st
from devstack.client.aio import AsyncNodeClient
from devstack.client.calls import NodeApiError
from devstack.errors import ClusterError
from devstack.state import ClusterState, NodeEntry
from node.argtypes import forgery_refused
from node.badactor import Forgery
from node.bidder import DEFAULT_BIDDER
from node.executors.docker import NODE_LABEL, containers_of, remove_containers_of
from node.requester import DEFAULT_DISPATCH
from profiles.locks import DEFAULT_WARN_MS
from profiles.stalls import DEFAULT_THRESHOLD_MS

CONTAINER_LABEL = NODE_LABEL
T = TypeVar("T")
EXTRA_PEERS = 4
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class UpOptions:
    nodes: int
    state_dir: Path
    bidder: str = DEFAULT_BIDDER
    dispatch: str = DEFAULT_DISPATCH
    slots: int | None = None
    lock_warn_ms: float = DEFAULT_WARN_MS
    stall_ms: float = DEFAULT_THRESHOLD_MS
    bad_actors: int = 0  # the last this many nodes forge their results
    collude: bool = True  # ... alike (node/badactor.py), or each its own way
    bad_actor_rate: float = 1.0  # ... this share of them
    ready_timeout: float = 180.0
    hosts: int = 0  # simulated hosts (network namespaces) the nodes spread over; 0: none


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held open until all are chosen)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def choose_peers(index: int, addrs: list[str], rng: random.Random) -> list[str]:
    """The bootstrap node and a few random others: never a pure star."""
    if index == 0:
        return []
    others = [a for i, a in enumerate(addrs) if i not in (0, index)]
    return [addrs[0], *rng.sample(others, min(EXTRA_PEERS, len(others)))]


def check_no_live_cluster(state_dir: Path, say: Callable[[str], None]) -> None:
    """Refuse if a live cluster is recorded; clean up after a crashed one."""
    existing = st.load(state_dir)
    if existing is None:
        return
    alive = st.live_nodes(existing)
    if alive:
        raise ClusterError(
            f"a devstack with {len(alive)} live node(s) is already running"
            f" (state in {st.state_path(state_dir)}); run `devstack down` first"
        )
    say(f"cleaning up after a cluster that did not shut down ({len(existing.nodes)} nodes)")
    stop_pids({f.pid: f.started for f in existing.forwarders})
    remove_containers([n.peer_id for n in existing.nodes])
    st.remove(state_dir)


def remove_network(state_dir: Path, say: Callable[[str], None]) -> None:
    """Remove the simulated hosts recorded in ``state_dir`` (made whole or in part),
    and their record; say what could not be removed."""
    network = netns.load(state_dir)
    if network is None:
        return
    failed = netns.remove(network)
    for line in failed:
        say(f"could not remove {line}")
    if not failed:
        netns.forget(state_dir)


def up(options: UpOptions, say: Callable[[str], None] = print) -> ClusterState:
    """Start the cluster and wait until it is ready; returns its recorded state.

    Raises :class:`ClusterError` if a live cluster exists, or if the nodes are not
    ready in time (then the nodes already started are taken down again), or if
    ``bad_actors`` is more than ``nodes``.
    """
    if not 0 <= options.bad_actors <= options.nodes:
        raise ClusterError(
            f"--bad-actors must be between 0 and the number of nodes ({options.nodes}),"
            f" got {options.bad_actors}"
        )
    refused = forgery_refused(options.bad_actors, options.collude, options.bad_actor_rate)
    if refused is not None:
        raise ClusterError(refused)
    state_dir = options.state_dir
    check_no_live_cluster(state_dir, say)
    remove_network(state_dir, say)  # left by a launcher that crashed
    _reset_dirs(state_dir)
    _ensure_image(say)
    network = _make_network(state_dir, options.hosts, say) if options.hosts else None
    try:
        return _start(options, network, say)
    except BaseException:
        remove_network(state_dir, say)
        raise


def _make_network(state_dir: Path, hosts: int, say: Callable[[str], None]) -> netns.Network:
    """The simulated hosts, recorded before they are made (README, Several hosts)."""
    network = netns.plan(hosts)
    netns.save(state_dir, network)
    netns.create(network)
    say(f"made {hosts} hosts ({network.subnet}, bridge {network.bridge})")
    return network


def _start(
    options: UpOptions, network: netns.Network | None, say: Callable[[str], None]
) -> ClusterState:
    """Fork the nodes (on ``network``'s hosts, in turn, if given) and wait until they
    are ready; takes them down again if they are not."""
    state_dir = options.state_dir

    # Import once in the launcher so every fork shares it (README, the devstack), and patch
    # py-libp2p here too: each node would otherwise do it (and check it) alone.
    from node.cli import run_node
    from node.node import NodeConfig
    from node.p2p import compat
    from node.p2p.identity import load_or_create_key, peer_id_of

    compat.apply()
    from devstack.warmup import WarmUpFailed, warm_up

    try:
        warm_up(free_ports(1)[0])
    except WarmUpFailed as exc:
        say(f"warning: {exc}; the nodes start cold")

    ports = free_ports(3 * options.nodes)
    rng = random.Random()
    entries: list[NodeEntry] = []
    hosts = netns.spread(options.nodes, network.hosts) if network else [None] * options.nodes
    for i, host in enumerate(hosts):
        data_dir = state_dir / "data" / f"node-{i}"
        peer_id = peer_id_of(load_or_create_key(data_dir))
        swarm, api, direct = ports[3 * i : 3 * i + 3]
        listen = host.address if host else "127.0.0.1"
        entries.append(
            NodeEntry(
                index=i,
                pid=0,
                started=0.0,
                peer_id=peer_id,
                multiaddr=f"/ip4/{listen}/tcp/{swarm}/p2p/{peer_id}",
                api=f"http://127.0.0.1:{api}",
                swarm_port=swarm,
                api_port=api,
                direct_port=direct,
                data_dir=str(data_dir),
                log_file=str(state_dir / "logs" / f"node-{i}.log"),
                bad_actor=i >= options.nodes - options.bad_actors,
                host=host.index if host else None,
                netns=host.netns if host else None,
                listen_host=host.address if host else None,
            )
        )
    addrs = [e.multiaddr for e in entries]
    for entry in entries:
        entry.peers = choose_peers(entry.index, addrs, rng)

    gc.collect()
    gc.freeze()
    t0 = time.monotonic()
    for entry in entries:
        config = NodeConfig(
            data_dir=Path(entry.data_dir),
            swarm_port=entry.swarm_port,
            api_port=entry.api_port,
            direct_port=entry.direct_port,
            peers=tuple(entry.peers),
            bidder=options.bidder,
            dispatch=options.dispatch,
            slots=options.slots,
            lock_warn_ms=options.lock_warn_ms,
            stall_ms=options.stall_ms,
            forgery=Forgery(options.collude, options.bad_actor_rate) if entry.bad_actor else None,
            log_file=Path(entry.log_file),
            listen_host=entry.listen_host,
            netns=entry.netns,
        )
        pid = os.fork()
        if pid == 0:  # the node process
            _become_node(lambda c=config: run_node(c), entry)
        entry.pid = pid
        entry.started = st.process_started(pid) or time.time()
    try:
        forwarders = _start_forwarders(entries, network, state_dir) if network else []
    except BaseException:
        stop_pids({e.pid: e.started for e in entries})  # not recorded yet: `down` misses them
        raise
    me = os.getpid()
    cluster = ClusterState(
        launcher_pid=me,
        launcher_started=st.process_started(me) or 0.0,
        created_at=time.time(),
        nodes=entries,
        bidder=options.bidder,
        dispatch=options.dispatch,
        slots=options.slots,
        lock_warn_ms=options.lock_warn_ms,
        stall_ms=options.stall_ms,
        hosts=options.hosts,
        forwarders=forwarders,
        collude=options.collude,
        bad_actor_rate=options.bad_actor_rate,
    )
    st.save(state_dir, cluster)
    say(f"forked {options.nodes} nodes in {time.monotonic() - t0:.1f}s; waiting for the mesh")
    try:
        asyncio.run(wait_ready(cluster, options.ready_timeout, say))
    except (ClusterError, KeyboardInterrupt):
        down(state_dir, say=lambda _m: None)
        raise
    return cluster


def _start_forwarders(
    entries: Sequence[NodeEntry], network: netns.Network, state_dir: Path
) -> list[st.ForwarderEntry]:
    """One API forwarder per host, for the APIs of its nodes (``devstack/forward.py``)."""
    started = []
    for host in network.hosts:
        forwarder = _start_forwarder(host.index, host.netns, entries, state_dir)
        if forwarder is not None:
            started.append(forwarder)
    return started


def _start_forwarder(
    host: int, netns_name: str, entries: Sequence[NodeEntry], state_dir: Path
) -> st.ForwarderEntry | None:
    """The API forwarder of ``host`` for its nodes among ``entries``; None if it has none."""
    from devstack import forward

    ports = [e.api_port for e in entries if e.host == host]
    if not ports:
        return None
    proc = forward.start(netns_name, ports, state_dir / "logs" / f"forward-host-{host}.log")
    when = st.process_started(proc.pid) or time.time()
    return st.ForwarderEntry(host=host, pid=proc.pid, started=when)


def _revive_forwarder(cluster: ClusterState, entry: NodeEntry, state_dir: Path) -> None:
    """Start the forwarder of ``entry``'s host again if it is not running (else the
    restarted node's API could not be reached)."""
    if entry.host is None or entry.netns is None:
        return
    mine = [f for f in cluster.forwarders if f.host == entry.host]
    if any(st.is_alive(f.pid, f.started) for f in mine):
        return
    revived = _start_forwarder(entry.host, entry.netns, cluster.nodes, state_dir)
    others = [f for f in cluster.forwarders if f.host != entry.host]
    cluster.forwarders = others + ([revived] if revived else [])


def _become_node(run: Callable[[], int], entry: NodeEntry) -> None:
    """In the forked child: detach from the terminal, redirect output, run, exit."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # The launcher's heap stays frozen here: a collection that walked it would
        # write to every object's header and so copy every page the fork shares.
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        out = os.open(
            str(Path(entry.log_file).with_suffix(".stderr")),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            0o644,
        )
        os.dup2(out, 1)
        os.dup2(out, 2)
        code = run()
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _reset_dirs(state_dir: Path) -> None:
    for sub in ("data", "logs"):
        shutil.rmtree(state_dir / sub, ignore_errors=True)
        (state_dir / sub).mkdir(parents=True)


def _ensure_image(say: Callable[[str], None]) -> None:
    try:
        from devstack.image import ensure_base_image

        if ensure_base_image():
            say("built the local base image busybox:latest (busybox-static)")
    except Exception as exc:  # Docker is optional for noop jobs
        say(f"warning: no base image ({exc}); docker jobs will fail until Docker runs")


async def wait_ready(cluster: ClusterState, timeout: float, say: Callable[[str], None]) -> None:
    """Wait until every node is healthy, has gossip peers and sees the whole network.

    Raises :class:`ClusterError` naming the nodes that are not ready, or a node
    process that died (with the tail of its log).
    """
    deadline = time.monotonic() + timeout
    n = len(cluster.nodes)
    clients = {e.index: AsyncNodeClient(e.api, timeout=2.0) for e in cluster.nodes}
    try:

        async def health(entry: NodeEntry) -> dict[str, Any] | None:
            try:
                return await clients[entry.index].health()
            except NodeApiError:
                return None

        done: set[int] = set()
        mesh: set[int] = set()
        while True:
            dead = [e for e in cluster.nodes if not st.is_alive(e.pid, e.started)]
            if dead:
                raise ClusterError(f"{dead[0].name} exited during start-up:\n{log_tail(dead[0])}")
            waiting = [e for e in cluster.nodes if e.index not in done]
            answers = await asyncio.gather(*(health(e) for e in waiting))
            for entry, answer in zip(waiting, answers, strict=True):
                # A lone node has no gossip peers to wait for: it is its whole network.
                if answer and (answer["ready"] or (n == 1 and answer["ok"])):
                    mesh.add(entry.index)
                    if answer["network_size"] >= n:
                        done.add(entry.index)
            if len(done) == n:
                return
            if time.monotonic() > deadline:
                late = [e.name for e, a in zip(waiting, answers, strict=True) if not a]
                raise ClusterError(
                    f"not ready after {timeout:.0f}s: {len(mesh)}/{n} nodes in the mesh,"
                    f" {len(done)}/{n} see the whole network; unresponsive: {late[:10]}"
                )
            # Polling is not free for the nodes: stay gentle on a big cluster.
            await asyncio.sleep(max(0.25, n / 100))
    finally:
        for client in clients.values():
            await client.aclose()


def log_tail(entry: NodeEntry, lines: int = 20) -> str:
    text = ""
    for path in (Path(entry.log_file).with_suffix(".stderr"), Path(entry.log_file)):
        with contextlib.suppress(OSError):
            text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
    return text.strip()


def stop_pids(pids: dict[int, float], timeout: float = STOP_TIMEOUT_S) -> list[int]:
    """SIGTERM each (pid, start time), wait, SIGKILL what is left; returns pids killed hard."""
    alive = {p: s for p, s in pids.items() if st.is_alive(p, s)}
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        _reap_children()
        alive = {p: s for p, s in alive.items() if st.is_alive(p, s)}
        if alive:
            time.sleep(0.1)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(st.is_alive(p, s) for p, s in alive.items()):
        _reap_children()
        time.sleep(0.05)
    _reap_children()
    return list(alive)


def _reap_children() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _with_docker(call: Callable[[Any], T]) -> T | None:
    """``call`` with a Docker SDK client; None if the daemon cannot be reached or the
    call fails (callers report what they could not see, they do not stop on it)."""
    try:
        import docker

        client = docker.from_env(timeout=30)
    except Exception:
        return None
    try:
        return call(client)
    except Exception:
        return None
    finally:
        client.close()


def remove_containers(peer_ids: list[str]) -> int:
    """Remove every container (running or not) that these nodes started."""
    if not peer_ids:
        return 0
    return _with_docker(lambda client: remove_containers_of(client, peer_ids)) or 0


def node_containers(peer_ids: Sequence[str]) -> list[str] | None:
    """The names of the containers (any state) these nodes started; None without Docker."""
    return _with_docker(lambda client: [c.name for c in containers_of(client, peer_ids)])


def down(state_dir: Path, say: Callable[[str], None] = print) -> bool:
    """End every node and container of the recorded cluster, and remove its simulated
    hosts (also those of a launcher that crashed before it recorded any node); False
    if nothing was recorded."""
    cluster = st.load(state_dir)
    if cluster is None:
        had_network = netns.load(state_dir) is not None
        remove_network(state_dir, say)
        return had_network
    killed = stop_pids({n.pid: n.started for n in cluster.nodes})
    if killed:
        say(f"{len(killed)} node(s) did not stop in {STOP_TIMEOUT_S:.0f}s and were killed")
    stop_pids({f.pid: f.started for f in cluster.forwarders})
    removed = remove_containers([n.peer_id for n in cluster.nodes])
    if removed:
        say(f"removed {removed} container(s)")
    remove_network(state_dir, say)
    st.remove(state_dir)
    return True


def restart_node(state_dir: Path, ref: str, overrides: Sequence[str] = ()) -> NodeEntry:
    """Stop one node and start it again as a fresh ``bacalhau-node`` process (same data
    dir, same options as at ``up``); ``overrides`` are more ``bacalhau-node run``
    options for this node alone, e.g. ``("--cpu", "0.5")``. On a simulated host whose
    API forwarder is gone, the forwarder is started again too."""
    cluster = st.load(state_dir)
    if cluster is None:
        raise ClusterError("no devstack is running; start one with `devstack up`")
    entry = st.find_node(cluster, ref)
    argv = [
        sys.executable,
        "-m",
        "node.cli",
        "run",
        "--data-dir",
        entry.data_dir,
        "--swarm-port",
        str(entry.swarm_port),
        "--api-port",
        str(entry.api_port),
        "--bidder",
        cluster.bidder,
        "--dispatch",
        cluster.dispatch,
        "--log-file",
        entry.log_file,
    ]
    for flag, value in (
        ("--slots", cluster.slots),
        ("--lock-warn-ms", cluster.lock_warn_ms),
        ("--stall-ms", cluster.stall_ms),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if entry.bad_actor:
        argv += ["--bad-actor", "--bad-actor-rate", str(cluster.bad_actor_rate)]
        argv.append("--collude" if cluster.collude else "--no-collude")
    if entry.direct_port:  # 0 in a state file from before it was recorded
        argv += ["--direct-port", str(entry.direct_port)]
    if entry.netns is not None and entry.listen_host is not None:
        argv += ["--netns", entry.netns]
        argv += ["--listen", f"/ip4/{entry.listen_host}/tcp/{entry.swarm_port}"]
    for peer in entry.peers or [n.multiaddr for n in cluster.nodes if n is not entry][:1]:
        argv += ["--peer", peer]
    argv += list(overrides)
    _check_node_argv(argv[3:])
    stop_pids({entry.pid: entry.started})
    with open(Path(entry.log_file).with_suffix(".stderr"), "ab") as err:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True
        )
    entry.pid = proc.pid
    entry.started = st.process_started(proc.pid) or time.time()
    _revive_forwarder(cluster, entry, state_dir)
    st.save(state_dir, cluster)
    return entry


def _check_node_argv(argv: list[str]) -> None:
    """Raise :class:`ClusterError` if ``bacalhau-node`` would refuse ``argv``."""
    import io

    from node.cli import build_parser

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            build_parser().parse_args(argv)
    except SystemExit:
        said = errors.getvalue().strip().splitlines()
        raise ClusterError(
            f"bacalhau-node refuses these options: {said[-1] if said else argv}"
        ) from None


def wait_foreground(state_dir: Path, say: Callable[[str], None] = print) -> None:
    """Keep the launcher in the foreground until Ctrl+C, SIGTERM, or every node is gone."""

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Also SIGINT: a launcher started in the background inherits it ignored.
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        while True:
            _reap_children()
            cluster = st.load(state_dir)
            if cluster is None:
                break
            if not st.live_nodes(cluster):
                say("every node has stopped")
                down(state_dir, say)
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("\nstopping the devstack ...")
        down(state_dir, say)
