"""The simulated hosts' plan and record (devstack/netns.py) and how a node tells
hosts apart (membership's host_of), without making any namespace."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from devstack import netns
from node.p2p.membership import MemberEntry, Membership

pytestmark = pytest.mark.timeout(60)


def test_a_plan_uses_a_free_private_24_and_names_of_its_own(tmp_path: Path) -> None:
    plan = netns.plan(3, tag="abc123")
    subnet = ipaddress.IPv4Network(plan.subnet)
    assert subnet.prefixlen == 24 and subnet.is_private
    assert not any(subnet.overlaps(used) for used in netns._used_networks())
    assert [h.address for h in plan.hosts] == [str(subnet.network_address + k) for k in (2, 3, 4)]
    assert plan.bridge == "pybabc123br" and plan.switch == "pybabc123-sw"
    assert all(len(name) <= 15 for name in (plan.bridge, *(h.link for h in plan.hosts)))
    assert len({h.netns for h in plan.hosts}) == 3
    netns.save(tmp_path, plan)
    assert netns.load(tmp_path) == plan
    netns.forget(tmp_path)
    assert netns.load(tmp_path) is None


def test_hosts_are_named_by_index_and_bad_records_and_counts_are_refused(tmp_path: Path) -> None:
    plan = netns.plan(2, tag="abc124")
    assert plan.host("1") is plan.hosts[1]
    assert plan.host("host-0") is plan.hosts[0]
    for wrong in ("2", "host-x", ""):
        with pytest.raises(netns.NetworkError, match="host-0 to host-1"):
            plan.host(wrong)
    with pytest.raises(netns.NetworkError, match="between 1 and 200"):
        netns.plan(0)
    (tmp_path / netns.NETWORK_FILE).write_text('{"tag": 1}')
    with pytest.raises(netns.NetworkError, match="not a devstack network record"):
        netns.load(tmp_path)


def test_spread_puts_nodes_on_hosts_in_turn() -> None:
    plan = netns.plan(3, tag="abc125")
    assert [h.index for h in netns.spread(7, plan.hosts)] == [0, 1, 2, 0, 1, 2, 0]


def test_membership_tells_hosts_apart_by_direct_address() -> None:
    me = "12D3KooW" + "A" * 44
    other, unknown = "12D3KooW" + "B" * 44, "12D3KooW" + "C" * 44
    members = Membership(me)
    members.direct = f"/ip4/10.201.3.2/tcp/4001/p2p/{me}"
    members.merge([MemberEntry(other, 1, 1, "", f"/ip4/10.201.3.4/tcp/4002/p2p/{other}")])
    assert members.host_of(me) == "10.201.3.2"
    assert members.host_of(other) == "10.201.3.4"
    assert members.host_of(unknown) is None
