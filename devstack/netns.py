"""Simulated hosts: Linux network namespaces the devstack makes, links and removes.

``devstack up --hosts K`` stands K machines in for real ones on this one (README,
Several hosts). Each host is a network namespace of its own with one veth link to
a bridge, and one address in a private /24 that no route or address of the
machine uses. The bridge lives in one more namespace, the *switch*, so nothing of
the network touches the machine's own namespace: no link, no address, no route,
and no firewall rule (the machine's Docker turns bridge netfilter on with a
FORWARD policy of DROP; the switch's own firewall is empty). The hosts have no
default route and no NAT: a packet from a host can reach the other hosts and
nothing else, and nothing outside can reach them.

A host is cut off (:func:`partition`) by taking its link's switch end down, and
brought back (:func:`heal`) by taking it up. :func:`create` records nothing; the caller saves
the :class:`Network` (``network.json``, :func:`save`) before it, so that
:func:`remove` can undo a half-made network after a crash.

Every change runs ``ip`` (iproute2) as a subprocess; this needs root.
"""

from __future__ import annotations

import ipaddress
import json
import random
import secrets
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from devstack.errors import ClusterError

NETWORK_FILE = "network.json"
_IP_TIMEOUT_S = 20.0
# Where private /24s are looked for: 10.200.0.0 - 10.254.255.0.
_SECOND_OCTETS = range(200, 255)


class NetworkError(ClusterError):
    """A namespace, link or address could not be made or changed; says which."""


@dataclass(frozen=True)
class HostNet:
    """One simulated host: its namespace, the switch's end of its link (what a
    partition takes down) and its address on the bridge."""

    index: int
    netns: str
    link: str
    address: str

    @property
    def name(self) -> str:
        return f"host-{self.index}"


@dataclass(frozen=True)
class Network:
    """The hosts of one devstack and what joins them: the switch namespace and the
    bridge in it."""

    tag: str
    bridge: str
    subnet: str
    hosts: tuple[HostNet, ...]
    switch: str = ""

    def host(self, ref: str) -> HostNet:
        """A host by index (``1``) or name (``host-1``); NetworkError if none."""
        text = ref.strip().removeprefix("host-")
        if text.isdigit() and int(text) < len(self.hosts):
            return self.hosts[int(text)]
        raise NetworkError(
            f"no host {ref!r}: this devstack has host-0 to host-{len(self.hosts) - 1}"
        )


@dataclass(frozen=True)
class NetworkStatistics:
    """``hosts`` made, ``cut_off`` (link down now), and what of the network exists
    now (``present``: namespaces, links and the bridge found)."""

    hosts: int
    cut_off: tuple[str, ...]
    present: int


def _run_ip(args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            ["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetworkError(f"`ip {' '.join(args)}` could not run: {exc}") from None
    if check and done.returncode != 0:
        raise NetworkError(f"`ip {' '.join(args)}` failed: {done.stderr.strip() or done.stdout}")
    return done


def _used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network a route or an address of this machine's namespace uses."""
    found: list[ipaddress.IPv4Network] = []
    routes = json.loads(_run_ip(["-j", "-4", "route", "show", "table", "all"]).stdout or "[]")
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("default", ""):
            continue
        try:
            found.append(ipaddress.IPv4Network(dst, strict=False))
        except ValueError:
            continue
    links = json.loads(_run_ip(["-j", "-4", "addr", "show"]).stdout or "[]")
    for link in links:
        for info in link.get("addr_info", []):
            found.append(
                ipaddress.IPv4Network(f"{info['local']}/{info.get('prefixlen', 32)}", strict=False)
            )
    return found


def free_subnet(rng: random.Random | None = None) -> ipaddress.IPv4Network:
    """A private /24 (in 10.200.0.0/16 - 10.254.0.0/16) that no route or address of
    this machine overlaps. Raises NetworkError if none is found."""
    used = _used_networks()
    rng = rng or random.Random()
    for _ in range(500):
        candidate = ipaddress.IPv4Network(
            f"10.{rng.choice(_SECOND_OCTETS)}.{rng.randrange(256)}.0/24"
        )
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise NetworkError("no free private /24 found for the hosts (every one tried is in use)")


def plan(hosts: int, tag: str | None = None) -> Network:
    """The names and addresses of ``hosts`` new hosts (nothing is made yet)."""
    if not 1 <= hosts <= 200:
        raise NetworkError(f"--hosts must be between 1 and 200, got {hosts}")
    tag = tag or secrets.token_hex(3)
    subnet = free_subnet()
    first = subnet.network_address
    return Network(
        tag=tag,
        bridge=f"pyb{tag}br",
        switch=f"pyb{tag}-sw",
        subnet=str(subnet),
        hosts=tuple(
            HostNet(
                index=k, netns=f"pyb{tag}-h{k}", link=f"pyb{tag}h{k}", address=str(first + k + 2)
            )
            for k in range(hosts)
        ),
    )


def create(network: Network) -> None:
    """Make the switch and its bridge, and each host's namespace, link and address.
    On failure what was made is removed again and NetworkError says what failed."""
    switch, bridge = network.switch, network.bridge
    prefix = ipaddress.IPv4Network(network.subnet).prefixlen
    steps: list[list[str]] = [
        ["netns", "add", switch],
        ["-n", switch, "link", "set", "lo", "up"],
        ["-n", switch, "link", "add", "name", bridge, "type", "bridge"],
        ["-n", switch, "link", "set", bridge, "up"],
    ]
    for host in network.hosts:
        inside = f"{host.link}n"
        steps += [
            ["netns", "add", host.netns],
            ["link", "add", host.link, "type", "veth", "peer", "name", inside],
            ["link", "set", host.link, "netns", switch],
            ["link", "set", inside, "netns", host.netns],
            ["-n", switch, "link", "set", host.link, "master", bridge],
            ["-n", switch, "link", "set", host.link, "up"],
            ["-n", host.netns, "link", "set", inside, "name", "eth0"],
            ["-n", host.netns, "addr", "add", f"{host.address}/{prefix}", "dev", "eth0"],
            ["-n", host.netns, "link", "set", "eth0", "up"],
            ["-n", host.netns, "link", "set", "lo", "up"],
        ]
    try:
        for step in steps:
            _run_ip(step)
    except NetworkError:
        remove(network)
        raise


def remove(network: Network) -> list[str]:
    """Remove every namespace of ``network`` that exists (each takes its links with
    it), and any link a crash left in the machine's namespace. Never raises; what
    could not be removed, each as a line naming it."""
    failed: list[str] = []
    namespaces = set(_namespaces())
    for name in (*(h.netns for h in network.hosts), network.switch):
        if name and name in namespaces:
            done = _run_ip(["netns", "del", name], check=False)
            if done.returncode != 0:
                failed.append(f"namespace {name}: {done.stderr.strip()}")
    for name in _stray_links(network):
        done = _run_ip(["link", "del", name], check=False)
        # Deleting one end of a veth takes the other with it: gone is fine.
        if done.returncode != 0 and _link_exists(name):
            failed.append(f"link {name}: {done.stderr.strip()}")
    return failed


def _stray_links(network: Network) -> list[str]:
    """Links of ``network`` in the machine's namespace (only a crash between making
    a link and moving it leaves one)."""
    names = [network.bridge, *(h.link for h in network.hosts)]
    names += [f"{h.link}n" for h in network.hosts]
    return [name for name in names if _link_exists(name)]


def _namespaces() -> list[str]:
    listed = _run_ip(["-j", "netns", "list"], check=False).stdout.strip()
    return [entry["name"] for entry in json.loads(listed or "[]")]


def _link_exists(name: str, netns: str | None = None) -> bool:
    where = ["-n", netns] if netns else []
    return _run_ip([*where, "link", "show", "dev", name], check=False).returncode == 0


def leftovers(network: Network) -> list[str]:
    """What of ``network`` exists now, by name: its namespaces, and links in the
    machine's namespace."""
    namespaces = set(_namespaces())
    found = [n for n in (network.switch, *(h.netns for h in network.hosts)) if n in namespaces]
    return found + _stray_links(network)


def partition(network: Network, ref: str) -> HostNet:
    """Cut host ``ref`` off the others: its link goes down."""
    host = network.host(ref)
    _run_ip(["-n", network.switch, "link", "set", host.link, "down"])
    return host


def heal(network: Network, ref: str) -> HostNet:
    """Join host ``ref`` to the others again: its link comes up."""
    host = network.host(ref)
    _run_ip(["-n", network.switch, "link", "set", host.link, "up"])
    return host


def cut_off(network: Network) -> list[str]:
    """The hosts whose link is down now."""
    return [host.name for host in network.hosts if not _link_up(host.link, network.switch)]


def _link_up(name: str, netns: str) -> bool:
    shown = _run_ip(["-n", netns, "-j", "link", "show", "dev", name], check=False).stdout
    links = json.loads(shown or "[]")
    return bool(links) and "UP" in links[0].get("flags", [])


def statistics(network: Network) -> NetworkStatistics:
    return NetworkStatistics(
        hosts=len(network.hosts),
        cut_off=tuple(cut_off(network)),
        present=len(leftovers(network)),
    )


# -- the record ---------------------------------------------------------------------


def save(state_dir: Path, network: Network) -> None:
    """Record ``network`` in the state dir, before it is made."""
    path = state_dir / NETWORK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(network), indent=2))
    tmp.replace(path)


def load(state_dir: Path) -> Network | None:
    """The network recorded in the state dir, None if there is none. Raises
    NetworkError naming the file if it is not one this module wrote."""
    path = state_dir / NETWORK_FILE
    try:
        raw = json.loads(path.read_text())
        return Network(
            tag=str(raw["tag"]),
            bridge=str(raw["bridge"]),
            switch=str(raw["switch"]),
            subnet=str(raw["subnet"]),
            hosts=tuple(HostNet(**host) for host in raw["hosts"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NetworkError(f"{path} is not a devstack network record: {exc}") from None


def forget(state_dir: Path) -> None:
    (state_dir / NETWORK_FILE).unlink(missing_ok=True)


def spread(nodes: int, hosts: Iterable[HostNet]) -> list[HostNet]:
    """The host of each of ``nodes`` nodes, in turn over ``hosts``."""
    ordered = list(hosts)
    return [ordered[i % len(ordered)] for i in range(nodes)]
