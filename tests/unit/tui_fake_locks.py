"""More of a real devstack replayed, for the TUI's node and locks views (beside ``tui_fake``).

:class:`FakeContentionCluster` serves what :class:`~tests.unit.tui_fake.FakeCluster`
does and, on top: ``GET /api/v1/debug/locks`` (each node's locks and stalls, taken
from its two captured stats rounds: the first request gets round 0, every later one
round 1, or always :attr:`~FakeContentionCluster.locks_round` if set) and
``POST /api/v1/debug/profile`` (node-0's answer captured on a real devstack while
jobs ran, in ``data/tui/node_extra.json``; 409 while
:attr:`~FakeContentionCluster.busy`) and ``GET /api/v1/logs?tail=N[&after=OFFSET]``
(each node's log in :attr:`~FakeContentionCluster.logs`, node-0's holding the
captured lines; :func:`log_answer` reads it as the node reads its file). Its
``GET /api/v1/node`` answers carry what :attr:`~FakeContentionCluster.info_extra`
adds: node-0's record of the others as a requester (:data:`CREDIBILITY`, hand-made,
as the captures predate it). :func:`write_state` makes a devstack state directory
naming these nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from devstack import state as st
from devstack.client.aio import AsyncNodeClient
from tests.unit.tui_fake import CLUSTER, NOW, FakeCluster, load_captured

EXTRA: dict[str, Any] = load_captured(Path(__file__).parent / "data" / "tui" / "node_extra.json")
PROFILE: dict[str, Any] = EXTRA["profile"]
LOG_LINES: list[str] = EXTRA["log"]
N0, N1, N2 = (node["peer_id"] for node in CLUSTER["nodes"])
#: Seconds node-2 stays excluded by node-0, as of ``tui_fake.NOW``.
EXCLUDED_FOR = 1500.0
#: node-0's ``GET /api/v1/node`` additions, in the shape ``node/node.py`` and
#: ``node/credibility.py`` give them: it caught node-2 (a bad actor) twice, the last
#: time 5 minutes ago, after one escalation and two spot checks.
CREDIBILITY: dict[str, Any] = {
    "credibility": {
        N0: {"agreed": 6, "caught": 0, "excluded_until": None},
        N1: {"agreed": 5, "caught": 0, "excluded_until": None},
        N2: {"agreed": 1, "caught": 2, "excluded_until": NOW + EXCLUDED_FOR},
    },
    "requester": {
        "escalations": 1,
        "spot_checks": 2,
        "extra_runs": 4,
        "credibility": {"known": 3, "trusted": 2, "excluded": 1, "agreed": 12, "caught": 2},
    },
}


def log_answer(data: bytes, tail: int, after: int | None) -> tuple[int, list[str]]:
    """What ``GET /api/v1/logs`` answers for a log file holding ``data``: the offset
    past the last complete line read, and the last ``tail`` complete lines (those after
    ``after``, or a fresh tail when there is none or the file is shorter than it)."""
    start = 0 if after is None or after > len(data) else after
    end = max(start, data.rfind(b"\n") + 1)
    lines = data[start:end].split(b"\n")[:-1]
    shown = lines[-tail:] if tail > 0 else []
    return end, [line.decode("utf-8", errors="replace").rstrip("\r") for line in shown]


def locks_document(node: dict[str, Any], round_: int) -> dict[str, Any]:
    """Node ``node``'s ``/api/v1/debug/locks`` answer as of its stats round ``round_``."""
    stats = node["stats"][round_]
    return {
        "node": node["peer_id"],
        "lock_warn_ms": stats["lock_warn_ms"],
        "locks": stats["locks"],
        "stalls": stats["stalls"],
    }


class FakeContentionCluster(FakeCluster):
    """FakeCluster plus the debug endpoints; counts and can refuse them."""

    def __init__(self) -> None:
        super().__init__()
        self.locks_served: dict[str, int] = {}
        self.profiles_asked: list[str] = []
        self.busy = False
        self.locks_round: int | None = None  # serve this round to every request instead
        self.info_extra: dict[str, dict[str, Any]] = {"node0.test": CREDIBILITY}
        """What each node's ``GET /api/v1/node`` adds to the captured answer, by host
        (a dict merges into the captured one's)."""
        self.logs: dict[str, bytes] = {
            host: "".join(f"{line}\n" for line in LOG_LINES).encode() if n["index"] == 0 else b""
            for host, n in self.by_host.items()
        }
        """Each node's log file, by host: append to it as the node would."""

    def log_path(self, host: str) -> str:
        """Where the node on ``host`` says its log file is."""
        return f"/fake/logs/{self.by_host[host]['name']}.log"

    def handler(self, request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        if host in self.failing or host in self.slow or host not in self.by_host:
            return super().handler(request)
        node = self.by_host[host]
        if path == "/api/v1/debug/locks":
            self.requests.append(f"{host}{path}")
            served = self.locks_served.get(host, 0)
            self.locks_served[host] = served + 1
            round_ = min(served, 1) if self.locks_round is None else self.locks_round
            return httpx.Response(200, json=locks_document(node, round_))
        if path == "/api/v1/logs":
            self.requests.append(f"{host}{path}")
            params = request.url.params
            after = int(params["after"]) if "after" in params else None
            offset, lines = log_answer(self.logs[host], int(params["tail"]), after)
            return httpx.Response(
                200, json={"path": self.log_path(host), "offset": offset, "lines": lines}
            )
        if path == "/api/v1/node" and host in self.info_extra:
            self.requests.append(f"{host}{path}")
            info = dict(node["info"])
            for key, value in self.info_extra[host].items():
                old = info.get(key)
                info[key] = {**old, **value} if isinstance(old, dict) else value
            return httpx.Response(200, json=info)
        if path == "/api/v1/debug/profile" and request.method == "POST":
            self.requests.append(f"{host}{path}")
            self.profiles_asked.append(request.url.params["seconds"])
            if self.busy:
                return httpx.Response(
                    409, json={"error": "busy", "message": "a profile is already running"}
                )
            answer = dict(PROFILE, node=node["peer_id"], seconds=int(request.url.params["seconds"]))
            return httpx.Response(200, json=answer)
        return super().handler(request)

    def connect(self, api: str, timeout: float = 10.0) -> AsyncNodeClient:
        """A client of this fake, as the views make a real one."""
        return AsyncNodeClient(api, timeout=timeout, transport=self.transport())


def write_state(state_dir: Path) -> st.ClusterState:
    """A ``cluster.json`` in ``state_dir`` for the captured nodes (APIs on the fake's
    hosts)."""
    nodes = []
    for node in CLUSTER["nodes"]:
        nodes.append(
            st.NodeEntry(
                index=node["index"],
                pid=2**22 + node["index"],  # above pid_max: no process of anyone's
                started=0.0,
                peer_id=node["peer_id"],
                multiaddr=f"/ip4/127.0.0.1/tcp/{4000 + node['index']}",
                api=f"http://node{node['index']}.test",
                swarm_port=4000 + node["index"],
                api_port=5000 + node["index"],
                data_dir=str(state_dir / "data" / node["name"]),
                log_file=str(state_dir / "logs" / f"{node['name']}.log"),
                bad_actor=node["bad_actor"],
            )
        )
    cluster = st.ClusterState(launcher_pid=2**22, launcher_started=0.0, created_at=0.0, nodes=nodes)
    st.save(state_dir, cluster)
    return cluster
