"""The devstack's state on disk: ``.devstack/cluster.json`` and the folders beside it.

``cluster.json`` lists every node's pid, peer id, multiaddr and API URL, for
scripts and the TUI. A process is taken as ours only if its pid *and* its start
time match what was recorded, so a recycled pid is never mistaken for a node.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from devstack.errors import DevstackError

STATE_FILE = "cluster.json"


class StateError(DevstackError):
    """The state directory or file cannot be used; the text says what to do."""


class NodeEntry(msgspec.Struct):
    index: int
    pid: int
    started: float
    peer_id: str
    multiaddr: str
    api: str
    swarm_port: int
    api_port: int
    data_dir: str
    log_file: str
    direct_port: int = 0  # the node's direct libp2p host (job messages)
    peers: list[str] = msgspec.field(default_factory=list)
    bad_actor: bool = False  # started with --bad-actor: forges its results

    @property
    def name(self) -> str:
        return f"node-{self.index}"


class ClusterState(msgspec.Struct):
    launcher_pid: int
    launcher_started: float
    created_at: float
    nodes: list[NodeEntry]
    bidder: str = "hash-space"
    detached: bool = False
    # What every node was started with, so `devstack restart` starts it alike.
    dispatch: str = "offer"
    slots: int | None = None
    lock_warn_ms: float | None = None
    stall_ms: float | None = None


def default_state_dir() -> Path:
    return Path(os.environ.get("DEVSTACK_DIR", ".devstack")).absolute()


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def load(state_dir: Path) -> ClusterState | None:
    """The recorded cluster, or None if there is none. Raises StateError if unreadable."""
    path = state_path(state_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return msgspec.json.decode(data, type=ClusterState)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise StateError(f"{path} is not a devstack state file ({exc}); delete it") from None


def save(state_dir: Path, state: ClusterState) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_path(state_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(state)))
    tmp.replace(path)


def remove(state_dir: Path) -> None:
    state_path(state_dir).unlink(missing_ok=True)


def process_started(pid: int) -> float | None:
    import psutil  # here: the CLI verbs that only read the state file start faster

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_alive(pid: int, started: float) -> bool:
    """True if ``pid`` is the very process recorded (same start time) and not a zombie."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < 0.5 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def live_nodes(state: ClusterState) -> list[NodeEntry]:
    return [n for n in state.nodes if is_alive(n.pid, n.started)]


def find_node(state: ClusterState, ref: str) -> NodeEntry:
    """A node by index (``3``), name (``node-3``) or a unique part of its peer id."""
    ref = ref.strip()
    if ref.removeprefix("node-").isdigit():
        index = int(ref.removeprefix("node-"))
        for node in state.nodes:
            if node.index == index:
                return node
        raise StateError(f"no node {ref}: the cluster has nodes 0 to {len(state.nodes) - 1}")
    matches = [n for n in state.nodes if ref and ref in n.peer_id]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise StateError(f"no node matches {ref!r}: give an index, node-N, or part of a peer id")
    raise StateError(f"{ref!r} matches {len(matches)} nodes: give more of the peer id")


def node_by_peer(state: ClusterState, peer_id: str) -> NodeEntry | None:
    return next((n for n in state.nodes if n.peer_id == peer_id), None)
