"""The devstack's state on disk: ``.devstack/cluster.json`` and the folders beside it.

``cluster.json`` lists every node's pid, peer id, multiaddr and API URL, for
scripts and the TUI. A process is taken as ours only if its pid *and* its start
time match what was recorded, so a recycled pid is never mistaken for a node.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from devstack.errors import DevstackError

STATE_FILE = "cluster.json"


class StateError(DevstackError):
    """The state directory or file cannot be used; the text says what to do."""


@dataclass
class NodeEntry:
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
    peers: list[str] = field(default_factory=list)
    bad_actor: bool = False  # started with --bad-actor: forges its results
    # On a simulated host (`up --hosts`): its index, namespace and libp2p address.
    host: int | None = None
    netns: str | None = None
    listen_host: str | None = None

    @property
    def name(self) -> str:
        return f"node-{self.index}"


@dataclass
class ForwarderEntry:
    """The API forwarder of simulated host ``host`` (``devstack/forward.py``)."""

    host: int
    pid: int
    started: float


@dataclass
class ClusterState:
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
    hosts: int = 0  # simulated hosts the nodes are spread over (devstack/netns.py)
    forwarders: list[ForwarderEntry] = field(default_factory=list)  # one per host
    collude: bool = True  # how the bad actors forge (node/badactor.py)
    bad_actor_rate: float = 1.0


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
        document = json.loads(data)
        if not isinstance(document, dict):
            raise ValueError("`$`: expected an object")
        nodes = _decode_list(NodeEntry, document.get("nodes"), "$.nodes")
        forwarders = _decode_list(ForwarderEntry, document.get("forwarders", []), "$.forwarders")
        return _decode(ClusterState, {**document, "nodes": nodes, "forwarders": forwarders}, "$")
    except ValueError as exc:
        raise StateError(f"{path} is not a devstack state file ({exc}); delete it") from None


def save(state_dir: Path, state: ClusterState) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_path(state_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(path)


# The state file is read with the standard library, not msgspec: reading it is the
# first thing most CLI verbs do, and they have 100 ms to answer.
_KINDS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list[str]": (list,),
    "list[NodeEntry]": (list,),
    "list[ForwarderEntry]": (list,),
    "int | None": (int, type(None)),
    "float | None": (int, float, type(None)),
    "str | None": (str, type(None)),
}
_T = TypeVar("_T")


def _decode_list(cls: type[_T], documents: Any, where: str) -> list[_T]:
    """``cls`` from each JSON object of a list; ValueError naming what is wrong."""
    if not isinstance(documents, list):
        raise ValueError(f"`{where}`: expected a list")
    return [_decode(cls, document, f"{where}[{i}]") for i, document in enumerate(documents)]


def _decode(cls: type[_T], document: Any, where: str) -> _T:
    """``cls`` from a JSON object; ValueError naming the first field that is missing
    or of the wrong kind (fields it does not know are ignored)."""
    if not isinstance(document, dict):
        raise ValueError(f"`{where}`: expected an object")
    values = {}
    for spec in fields(cls):  # type: ignore[arg-type]
        if spec.name not in document:
            if spec.default is MISSING and spec.default_factory is MISSING:
                raise ValueError(f"`{where}.{spec.name}`: missing")
            continue
        value = document[spec.name]
        kinds = _KINDS[str(spec.type)]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ValueError(f"`{where}.{spec.name}`: expected {spec.type}, got {value!r}")
        values[spec.name] = value
    return cls(**values)


def remove(state_dir: Path) -> None:
    state_path(state_dir).unlink(missing_ok=True)


def process_started(pid: int) -> float | None:
    """When ``pid`` started (seconds since the epoch, as psutil's ``create_time``),
    or None if there is no such process."""
    found = _process(pid)
    return None if found is None else found[0]


def is_alive(pid: int, started: float) -> bool:
    """True if ``pid`` is the very process recorded (same start time) and not a zombie."""
    found = _process(pid)
    return found is not None and abs(found[0] - started) < 0.5 and not found[1]


def _process(pid: int) -> tuple[float, bool] | None:
    """``pid``'s start time and whether it is a zombie; None if there is no such process.

    Read from ``/proc`` where there is one: importing psutil would cost ``devstack
    status`` a sixth of the 100 ms it has to answer in. psutil (the same arithmetic:
    the boot time plus the start in clock ticks) serves elsewhere.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return _process_by_psutil(pid)
    fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) "
    started = _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return started, fields[0] == b"Z"


@functools.cache
def _boot_time() -> float:
    for line in Path("/proc/stat").read_bytes().splitlines():
        if line.startswith(b"btime "):
            return float(line.split()[1])
    raise OSError("/proc/stat names no boot time")


def _process_by_psutil(pid: int) -> tuple[float, bool] | None:
    import psutil

    try:
        process = psutil.Process(pid)
        return process.create_time(), process.status() == psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def live_nodes(state: ClusterState) -> list[NodeEntry]:
    return [n for n in state.nodes if is_alive(n.pid, n.started)]


def find_node(state: ClusterState, ref: str) -> NodeEntry:
    """A node by index (``3``), name (``node-3``) or a unique part of its peer id;
    StateError if none or several match."""
    node = node_named(state, ref)
    if node is None:
        raise StateError(f"no node matches {ref!r}: give an index, node-N, or part of a peer id")
    return node


def node_named(state: ClusterState, ref: str) -> NodeEntry | None:
    """The node ``ref`` names as :func:`find_node` reads it, None when it names no
    node; StateError for an index out of range or a part of several peer ids."""
    ref = ref.strip()
    if ref.removeprefix("node-").isdigit():
        index = int(ref.removeprefix("node-"))
        for node in state.nodes:
            if node.index == index:
                return node
        raise StateError(f"no node {ref}: the cluster has nodes 0 to {len(state.nodes) - 1}")
    matches = [n for n in state.nodes if ref and ref in n.peer_id]
    if len(matches) > 1:
        raise StateError(f"{ref!r} matches {len(matches)} nodes: give more of the peer id")
    return matches[0] if matches else None


def node_by_peer(state: ClusterState, peer_id: str) -> NodeEntry | None:
    return next((n for n in state.nodes if n.peer_id == peer_id), None)
