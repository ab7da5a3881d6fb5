"""Several hosts on one machine (README, Several hosts): ``devstack up --hosts K`` puts
the nodes in network namespaces of the devstack's own, joined by a bridge on a
private /24; they reach each other over routed addresses, a job's runs land on
different hosts, a host can be cut off and healed, and ``down`` leaves no
namespace, link or bridge behind (checked with ``ip``). Needs root, as the
devstack does for hosts. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import forward, netns
from devstack import state as st
from devstack.client import NodeClient
from devstack.cluster import free_ports
from tests.conftest import (
    REPO,
    Devstack,
    get_json,
    running_devstack,
    wait_job_end,
    wait_until,
)

pytestmark = pytest.mark.slow

JOB_TIMEOUT_S = 180.0


def wait_network_size(apis: list[str], size: int, timeout: float, message: str) -> None:
    """Until every node at ``apis`` sees a network of ``size`` nodes."""
    wait_until(
        lambda: all(get_json(f"{api}/api/v1/healthz")["network_size"] == size for api in apis),
        timeout=timeout,
        interval=1.0,
        message=message,
    )


def hosts_by_peer(stack: Devstack) -> dict[str, int | None]:
    """Each node's simulated host, by peer id."""
    assert stack.state is not None
    return {n.peer_id: n.host for n in stack.state.nodes}


def completed(api: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Submit ``spec`` to the node at ``api`` and wait for the job's end: it completed."""
    with NodeClient(api) as client:
        job_id = client.submit(spec)["id"]
    record = wait_job_end(api, job_id, JOB_TIMEOUT_S)
    assert record["job"]["state"] == "completed", record["job"]
    return record


def ip_json(*args: str) -> Any:
    done = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=20)
    return json.loads(done.stdout or "[]")


@pytest.fixture(scope="module")
def hosts3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Devstack, netns.Network]]:
    state_dir = tmp_path_factory.mktemp("hosts3")
    stack = Devstack(state_dir=state_dir, nodes=9, up_args=("--hosts", "3"))
    network: netns.Network | None = None
    try:
        with running_devstack(state_dir, 9, stack):
            network = netns.load(state_dir)
            assert network is not None
            yield stack, network
    finally:
        if network is not None:  # `down` (in running_devstack) removed all of it
            assert netns.leftovers(network) == []
            names = {entry["name"] for entry in ip_json("netns", "list")}
            assert not any(name.startswith(f"pyb{network.tag}") for name in names)
            links = {entry["ifname"] for entry in ip_json("link", "show")}
            assert not any(name.startswith(f"pyb{network.tag}") for name in links)


def test_nodes_on_three_hosts_advertise_routable_addresses(
    hosts3: tuple[Devstack, netns.Network],
) -> None:
    stack, network = hosts3
    assert stack.state is not None
    subnet = ipaddress.IPv4Network(network.subnet)
    assert not subnet.overlaps(ipaddress.IPv4Network("127.0.0.0/8"))
    # No route of the machine's namespace reaches the hosts: nothing can leave them.
    for route in ip_json("-4", "route", "show", "table", "all"):
        dst = route.get("dst", "")
        if dst not in ("", "default"):
            assert not ipaddress.IPv4Network(dst, strict=False).overlaps(subnet), route
    for host in network.hosts:
        inside = subprocess.run(
            ["ip", "-n", host.netns, "-j", "route"], capture_output=True, text=True, timeout=20
        )
        assert all(r.get("dst") != "default" for r in json.loads(inside.stdout or "[]"))
    by_host: dict[int, int] = {}
    for entry in stack.state.nodes:
        assert entry.host is not None
        by_host[entry.host] = by_host.get(entry.host, 0) + 1
        info = get_json(f"{entry.api}/api/v1/node")
        for addr in info["addrs"]:
            ip = addr.split("/")[2]
            assert ipaddress.IPv4Address(ip) in subnet, addr
            assert ip == network.hosts[entry.host].address
    assert by_host == {0: 3, 1: 3, 2: 3}
    wait_network_size(stack.apis, 9, 60, "every node to see all 9")


def listening(netns_name: str | None = None) -> set[str]:
    """``ADDRESS:PORT`` of every TCP socket listening in ``netns_name`` (None: the
    machine's namespace), from ``ss``."""
    prefix = ["ip", "netns", "exec", netns_name] if netns_name else []
    done = subprocess.run(
        [*prefix, "ss", "-ltnH"], capture_output=True, text=True, timeout=20, check=True
    )
    return {line.split()[3] for line in done.stdout.splitlines() if line.strip()}


def test_on_a_host_the_api_is_on_its_loopback_and_only_libp2p_on_its_address(
    hosts3: tuple[Devstack, netns.Network],
) -> None:
    """Each host's namespace has its nodes' APIs on its own loopback and their two
    libp2p hosts on its address, and nothing else; the machine reaches each API on
    the same port of its own loopback, through the host's forwarder."""
    stack, network = hosts3
    assert stack.state is not None
    assert sorted(f.host for f in stack.state.forwarders) == [0, 1, 2]
    status = json.loads(stack.run("status", "--json", check=True).stdout)
    assert [h["forwarder"] for h in status["hosts"]["hosts"]] == [True, True, True]
    machine = listening()
    for host in network.hosts:
        nodes = [n for n in stack.state.nodes if n.host == host.index]
        expected = {f"127.0.0.1:{n.api_port}" for n in nodes}
        expected |= {
            f"{host.address}:{port}" for n in nodes for port in (n.swarm_port, n.direct_port)
        }
        assert listening(host.netns) == expected, host
        for node in nodes:
            assert f"127.0.0.1:{node.api_port}" in machine
            assert get_json(f"{node.api}/api/v1/node")["id"] == node.peer_id


def test_restarting_a_node_starts_its_hosts_forwarder_again(
    hosts3: tuple[Devstack, netns.Network],
) -> None:
    """A host's forwarder that died leaves its nodes' APIs out of reach, and `status`
    says so; `devstack restart` of one of its nodes starts it again."""
    stack, _ = hosts3
    assert stack.state is not None
    forwarder = next(f for f in stack.state.forwarders if f.host == 1)
    os.kill(forwarder.pid, signal.SIGTERM)
    wait_until(
        lambda: not st.is_alive(forwarder.pid, forwarder.started),
        timeout=30,
        message="the forwarder to end",
    )
    said = stack.run("status", check=True).stdout
    assert "host-1's API forwarder is not running" in said, said
    node = next(n for n in stack.state.nodes if n.host == 1)
    stack.restart(node)  # ready and whole: reached through a new forwarder
    assert stack.state is not None
    assert all(st.is_alive(f.pid, f.started) for f in stack.state.forwarders)
    assert sorted(f.host for f in stack.state.forwarders) == [0, 1, 2]
    assert "forwarder is not running" not in stack.run("status", check=True).stdout


def test_a_job_of_concurrency_three_runs_once_on_each_host(
    hosts3: tuple[Devstack, netns.Network],
) -> None:
    stack, _ = hosts3
    assert stack.state is not None
    host_of = hosts_by_peer(stack)
    spec = {"image": "busybox:latest", "command": ["echo", "hi"], "deal": {"concurrency": 3}}
    record = completed(stack.api(4), spec)
    runs = [e["node"] for e in record["job"]["executions"] if e["state"] == "published"]
    assert len(runs) == 3
    assert sorted(host_of[node] for node in runs) == [0, 1, 2]


def test_a_cut_off_host_leaves_the_network_and_comes_back_when_healed(
    hosts3: tuple[Devstack, netns.Network],
) -> None:
    stack, network = hosts3
    assert stack.state is not None
    host_of = hosts_by_peer(stack)
    cut = stack.run("partition", "2", check=True)
    assert "host-2" in cut.stdout
    assert netns.cut_off(network) == ["host-2"]
    outside = [n.api for n in stack.state.nodes if n.host != 2]
    inside = [n.api for n in stack.state.nodes if n.host == 2]
    try:
        # Jobs submitted on either side complete on the nodes their side can reach.
        for api in (inside[0], outside[0]):
            record = completed(api, {"image": "busybox:latest", "command": ["echo", "cut"]})
            ran = {e["node"] for e in record["job"]["executions"] if e["state"] == "published"}
            assert {host_of[node] == 2 for node in ran} == {api in inside}
        # The others forget the cut-off host's nodes once their heartbeats stop.
        wait_network_size(outside, 6, 150, "the nodes outside host-2 to see 6")
    finally:
        stack.run("heal", "host-2", check=True)
    assert netns.cut_off(network) == []
    wait_network_size(stack.apis, 9, 120, "every node to see all 9 again")
    # And the network works across hosts again.
    completed(
        stack.api(8),
        {"image": "busybox:latest", "command": ["echo", "healed"], "deal": {"concurrency": 3}},
    )


def submit_until_it_runs_on(
    client: NodeClient, spec: dict[str, Any], wanted: set[int], host_of: dict[str, int | None]
) -> tuple[str, str]:
    """Submit ``spec`` until a run of it is accepted on one of the ``wanted`` hosts
    (the offer order is the job's own), cancelling the others; the job and its node."""
    for _ in range(12):
        job_id = client.submit(spec)["id"]
        runner: str = wait_until(
            lambda job=job_id: next(
                (
                    e["node"]
                    for e in client.describe(job)["job"]["executions"]
                    if e["state"] in ("accepted", "running")
                ),
                None,
            ),
            timeout=60,
            message="the job's run to be accepted",
        )
        if host_of[runner] in wanted:
            return job_id, runner
        client.cancel(job_id)
    pytest.fail(f"no run landed on host(s) {sorted(wanted)} in 12 jobs")


def assert_ended_once_on(record: dict[str, Any], hosts: set[int], host_of: dict[str, Any]) -> None:
    """The job completed once, its one result published by a node on ``hosts``, after
    the requester gave up a silent node (``lost``)."""
    assert record["job"]["state"] == "completed", record["job"]
    published = [e for e in record["job"]["executions"] if e["state"] == "published"]
    assert len(published) == 1 and host_of[published[0]["node"]] in hosts, published
    kinds = [e["kind"] for e in record["events"] if not e["detail"].get("role")]
    assert kinds.count("completed") == 1
    assert kinds.count("publishing") == 1
    assert "lost" in kinds, kinds  # the requester gave the silent node up


def run_across_a_cut(
    stack: Devstack, requester_host: int, run_hosts: set[int]
) -> tuple[dict[str, Any], str, str, dict[str, int | None]]:
    """A 15 s job requested on ``requester_host`` and running on one of ``run_hosts``
    when host-2 is cut off, followed to its end, then host-2 healed: the job's record
    at its end, its requester's API, the node it ran on first, and each peer's host."""
    assert stack.state is not None
    host_of = hosts_by_peer(stack)
    requester = next(n for n in stack.state.nodes if n.host == requester_host)
    spec = {"image": "busybox:latest", "command": ["sh", "-c", "sleep 15; echo done"]}
    with NodeClient(requester.api) as client:
        job_id, first = submit_until_it_runs_on(client, spec, run_hosts, host_of)
        stack.run("partition", "2", check=True)
        try:
            record = wait_job_end(requester.api, job_id, JOB_TIMEOUT_S)
        finally:
            stack.run("heal", "2", check=True)
    return record, requester.api, first, host_of


def test_a_job_whose_node_is_cut_off_runs_again_on_another_host(
    hosts3: tuple[Devstack, netns.Network],
) -> None:
    """A c=1 job running on host-2 when host-2 is cut off: its requester (on host-0)
    hears nothing more, runs it again on a node it can reach, and the job completes
    once; after the heal the cut-off node's late proposal changes nothing."""
    stack, _ = hosts3
    record, api, _, host_of = run_across_a_cut(stack, requester_host=0, run_hosts={2})
    assert_ended_once_on(record, {0, 1}, host_of)
    # After the heal the cut-off node delivers its late proposal: nothing changes.
    wait_network_size(stack.apis, 9, 120, "every node to see all 9 again")
    again = get_json(f"{api}/api/v1/jobs/{record['job']['job']['id']}")
    assert_ended_once_on(again, {0, 1}, host_of)


def test_a_cut_off_requester_runs_again_on_its_own_host_a_job_whose_run_was_elsewhere(
    hosts3: tuple[Devstack, netns.Network],
) -> None:
    """The requester is the one cut off: its job runs on host-0 or host-1 when host-2
    goes. The requester hears nothing more from that node and runs the job again on
    a node of its own host (it has room), where it completes once. The node that ran
    it first finishes unheard; after the heal it delivers its proposal, and the job
    stays completed once, with the one result."""
    stack, _ = hosts3
    assert stack.state is not None
    record, api, far, host_of = run_across_a_cut(stack, requester_host=2, run_hosts={0, 1})
    assert_ended_once_on(record, {2}, host_of)
    wait_network_size(stack.apis, 9, 120, "every node to see all 9 again")
    # The far node's run ended; its late proposal was delivered, or given up, and
    # changed nothing at the requester.
    far_api = next(n.api for n in stack.state.nodes if n.peer_id == far)
    wait_until(
        lambda: get_json(f"{far_api}/api/v1/node")["capacity"]["reserved"] == 0,
        timeout=120,
        interval=1.0,
        message="the far node to end its run",
    )
    again = get_json(f"{api}/api/v1/jobs/{record['job']['job']['id']}")
    assert_ended_once_on(again, {2}, host_of)


def test_partition_and_heal_refuse_what_is_not_a_host(
    hosts3: tuple[Devstack, netns.Network],
) -> None:
    stack, _ = hosts3
    wrong = stack.run("partition", "7")
    assert wrong.returncode != 0
    assert "no host '7'" in wrong.stderr and "host-0 to host-2" in wrong.stderr


def test_two_nodes_started_by_hand_in_two_namespaces_join(tmp_path: Path) -> None:
    """The README's way to join machines: ``bacalhau-node run --listen
    /ip4/0.0.0.0/tcp/P --announce-addr /ip4/ADDR/tcp/P --peer ...``, here with
    ``--netns`` standing each node on a host of its own."""
    network = netns.plan(2)
    netns.save(tmp_path, network)
    netns.create(network)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        api_ports = free_ports(2)
        apis = [f"http://127.0.0.1:{port}" for port in api_ports]
        first_peer = ""
        for index, host in enumerate(network.hosts):
            # The API is on the host's loopback: the machine reaches it through a forwarder.
            log = tmp_path / f"forward-{index}.log"
            processes.append(forward.start(host.netns, [api_ports[index]], log))
            data_dir = tmp_path / f"n{index}"
            argv = [
                sys.executable, "-m", "node.cli", "run",
                "--data-dir", str(data_dir),
                "--api-port", str(api_ports[index]),
                "--netns", host.netns,
                "--listen", "/ip4/0.0.0.0/tcp/4001",
                "--announce-addr", f"/ip4/{host.address}/tcp/4001",
                "--log-file", str(tmp_path / f"n{index}.log"),
            ]  # fmt: skip
            if first_peer:
                argv += ["--peer", first_peer]
            processes.append(
                subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, start_new_session=True)
            )
            wait_until(
                lambda api=apis[index]: get_json(f"{api}/api/v1/healthz")["ok"],
                timeout=120,
                message=f"node {index} to answer",
                ignore=(httpx.HTTPError,),
            )
            if not first_peer:
                peer_id = json.loads((data_dir / "node.json").read_text())["id"]
                first_peer = f"/ip4/{host.address}/tcp/4001/p2p/{peer_id}"
        wait_network_size(apis, 2, 60, "both nodes to see each other")
        for api, host in zip(apis, network.hosts, strict=True):
            info = get_json(f"{api}/api/v1/node")
            assert info["addrs"] and all(
                a.startswith(f"/ip4/{host.address}/") for a in info["addrs"]
            )
        completed(apis[1], {"engine": "noop", "command": ["hi"], "deal": {"concurrency": 2}})
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        assert netns.remove(network) == []
        assert netns.leftovers(network) == []


def test_down_removes_a_half_made_network(tmp_path: Path) -> None:
    """A launcher that crashed while it made the hosts leaves a record and part of the
    network (here: the switch, one host, and a link not moved yet): `devstack down`
    removes all of it."""
    network = netns.plan(2)
    netns.save(tmp_path, network)
    half_made = [
        ["netns", "add", network.switch],
        ["netns", "add", network.hosts[0].netns],
        ["link", "add", network.hosts[1].link, "type", "veth", "peer", "name", "pybtmpn"],
    ]
    try:
        for step in half_made:
            subprocess.run(["ip", *step], check=True, capture_output=True, timeout=20)
        subprocess.run(["ip", "link", "set", "pybtmpn", "name", f"{network.hosts[1].link}n"],
                       check=True, capture_output=True, timeout=20)  # fmt: skip
        assert len(netns.leftovers(network)) == 4
        stack = Devstack(state_dir=tmp_path, nodes=0)
        done = stack.run("down", check=True)
        assert "no devstack" not in done.stdout
        assert netns.leftovers(network) == []
        assert netns.load(tmp_path) is None
    finally:
        netns.remove(network)
