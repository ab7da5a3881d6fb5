"""What ``devstack status`` prints (:func:`devstack.verbs.cluster.status_lines`): the
columns scripts and the integration tests read are as they were, and each healthy
node's requester record shows as ``caught K, excluded E``."""

from __future__ import annotations

from typing import Any

from devstack.verbs.cluster import MISSING, credibility_text, status_lines

PEER = "12D3KooWKVNrBZUPfvBbr7ybqpdFovMJKVVFDeAUUdhUUsXDhhdJ"


def _row(name: str, **more: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": name,
        "pid": 4242,
        "peer_id": PEER,
        "api": "http://127.0.0.1:5000",
        "alive": True,
        "bad_actor": False,
        "host": None,
        "healthy": True,
        "gossip_peers": 4,
        "mesh": 3,
        "network_size": 5,
        "jobs": 7,
        "dropped": 0,
        "credibility": {"known": 4, "trusted": 2, "excluded": 1, "agreed": 9, "caught": 3},
    }
    return row | more


def test_credibility_text() -> None:
    assert credibility_text({"known": 4, "excluded": 1, "caught": 3}) == "caught 3, excluded 1"
    assert credibility_text(None) == MISSING  # a node older than the record
    assert credibility_text({}) == MISSING


def test_status_lines_keep_the_old_columns_and_add_the_credibility() -> None:
    rows = [
        _row("node-0"),
        _row("node-1", bad_actor=True, host=1, credibility=None),
        {**_row("node-2", alive=False), "healthy": False},
        {**_row("node-3"), "healthy": False},
    ]
    lines = status_lines(rows, None)
    assert lines[0] == "2/4 nodes healthy"
    header = lines[1].split()
    assert header == [
        "node", "pid", "api", "peers", "mesh", "size", "jobs", "dropped", "credibility",
        "peer", "id",
    ]  # fmt: skip
    node0, node1, node2, node3 = lines[2:]
    assert node0.split()[:8] == ["node-0", "4242", "http://127.0.0.1:5000", "4", "3", "5", "7", "0"]
    assert "  caught 3, excluded 1  " in node0 and node0.endswith(PEER)
    # the peer id starts where the header says, whatever the credibility says
    assert node0.index(PEER) == node1.index(PEER) == lines[1].index("peer id")
    assert f"  {MISSING}  " in node1 and node1.endswith(f"{PEER}  (bad actor)  host-1")
    assert node2.endswith("not running") and node3.endswith("not answering")
    assert "\n".join(lines).count("(bad actor)") == 1


def test_status_lines_with_hosts() -> None:
    hosts = {
        "subnet": "10.77.0.0/24",
        "hosts": [
            {"name": "host-0", "address": "10.77.0.2", "cut_off": False, "forwarder": True},
            {"name": "host-1", "address": "10.77.0.3", "cut_off": True, "forwarder": False},
        ],
    }
    lines = status_lines([_row("node-0", host=0)], hosts)
    assert lines[:3] == [
        "1/1 nodes healthy",
        "2 hosts on 10.77.0.0/24; cut off: host-1",
        "host-1's API forwarder is not running: its nodes' APIs are out of reach"
        " (`devstack restart` one of its nodes to start it again)",
    ]
    assert lines[-1].endswith("host-0")
