"""What the tests share: real devstack clusters, waiting with deadlines, and py-libp2p
put back as it was after a test that patched it.

A cluster fixture starts ``devstack up --detach`` as a subprocess (the venv's
interpreter, so the nodes run the code under test), yields a :class:`Devstack`
handle, and on teardown runs ``devstack down`` and then asserts that nothing it
started is left: no node process and no container labelled with one of its peer
ids. Teardown runs whether the tests passed or not.

Every wait is a poll with a deadline that names what it waited for
(:func:`wait_until`, :func:`wait_until_async`), never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio

from devstack import state as st
from devstack.cluster import CONTAINER_LABEL
from devstack.jobs import TERMINAL
from devstack.state import ClusterState, NodeEntry

REPO = Path(__file__).resolve().parent.parent
# Generous: this is a 2-core machine, often shared with other clusters.
CLI_TIMEOUT_S = 120.0
# The keys issue 3 asks of both `devstack simulate --json` and `devstack bench bids --json`.
BID_FIGURE_KEYS = (
    "bids_per_job_mean",
    "bids_per_job_p99",
    "bids_per_job_max",
    "jobs_short_of_bids_first_round",
    "jobs_never_completed",
    "first_bid_p50_ms",
    "first_bid_p99_ms",
    "accepted_p99_ms",
    "load_max_over_mean",
)
UP_TIMEOUT_S = 300.0
DOWN_TIMEOUT_S = 120.0

T = TypeVar("T")
_ABSENT = object()


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.1,
    message: str = "condition",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Raises AssertionError naming ``message`` (and the last value or exception
    seen) once ``timeout`` seconds have passed. Exceptions of the types in
    ``ignore`` count as "not yet" (e.g. a node that is restarting).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            value, last = None, exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise timed_out(timeout, message, last)
        time.sleep(interval)


async def wait_until_async(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    message: str = "condition",
    pause: Callable[[float], Awaitable[Any]] = trio.sleep,
) -> T:
    """:func:`wait_until` for async code: between tries it awaits ``pause(interval)``
    (``trio.sleep``; a Textual pilot's ``pause`` in the TUI tests), so the code under
    test runs meanwhile. The deadline is wall-clock time, whatever clock the loop has."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise timed_out(timeout, message, value)
        await pause(interval)


def timed_out(timeout: float, message: str, last: Any) -> AssertionError:
    """The failure of a wait: how long, for what, and the last value seen."""
    return AssertionError(f"timed out after {timeout:g}s waiting for {message}; last: {last!r}")


@contextlib.contextmanager
def undo_libp2p_patches() -> Iterator[None]:
    """Undo, at the end of the block, whatever ``node.p2p.compat`` patched in py-libp2p
    inside it (``compat.apply``, called by a test or by the Transport or Node it
    makes): the patches are process-wide, and a test must not hand them on to the
    next. Every attribute of each module and class compat names (its ``REQUIRED``
    owners, the owners of ``LIBP2P_LOCKS``, and compat itself, whose flag says
    whether it applied) is put back as it was, and what was added is removed."""
    from node.p2p import compat

    owners = [
        compat,
        *dict.fromkeys([o for o, _, _ in compat.REQUIRED] + list(compat.LIBP2P_LOCKS)),
    ]
    saved = [(owner, dict(vars(owner))) for owner in owners]
    try:
        yield
    finally:
        for owner, before in saved:
            now = dict(vars(owner))
            for name in now.keys() - before.keys():
                delattr(owner, name)
            for name, value in before.items():
                if now.get(name, _ABSENT) is not value:
                    setattr(owner, name, value)


@pytest.fixture
def libp2p_patches_undone() -> Iterator[None]:
    """The test may patch py-libp2p (see :func:`undo_libp2p_patches`); it is put back after."""
    with undo_libp2p_patches():
        yield


def get_json(url: str, timeout: float = 10.0) -> Any:
    """GET ``url`` and return its JSON body, asserting a 2xx status."""
    response = httpx.get(url, timeout=timeout)
    assert response.is_success, f"GET {url}: {response.status_code} {response.text[:300]}"
    return response.json()


def describe_job(api: str, job_id: str) -> dict[str, Any]:
    return get_json(f"{api}/api/v1/jobs/{job_id}")


def wait_job_end(api: str, job_id: str, timeout: float, interval: float = 0.2) -> dict[str, Any]:
    """Poll the requester at ``api`` until ``job_id`` ends; return its description."""
    return wait_until(
        lambda: (d := describe_job(api, job_id))["job"]["state"] in TERMINAL and d,
        timeout=timeout,
        interval=interval,
        message=f"job {job_id} to end",
        ignore=(httpx.HTTPError,),
    )


def docker_client() -> Any:
    """A Docker SDK client, or skip the test if no daemon answers."""
    try:
        import docker

        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:
        pytest.skip(f"Docker daemon not reachable: {exc}")
    return client


def labelled_containers(peer_ids: set[str]) -> list[str]:
    """Names of containers (running or not) labelled as started by one of ``peer_ids``."""
    client = docker_client()
    try:
        # One listing call: `containers.list` inspects each container after listing,
        # which fails if another cluster's container goes away in between.
        found = client.api.containers(all=True, filters={"label": CONTAINER_LABEL})
        return [
            f"{'/'.join(c.get('Names') or [])} ({c.get('State')}, node {node})"
            for c in found
            if (node := (c.get("Labels") or {}).get(CONTAINER_LABEL)) in peer_ids
        ]
    finally:
        client.close()


def containers_with(labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """Containers (running or not) carrying every one of ``labels`` (name: value), as
    the Docker API lists them (``Id``, ``State``, ``Labels``, ...)."""
    client = docker_client()
    try:
        wanted = [f"{name}={value}" for name, value in labels.items()]
        return client.api.containers(all=True, filters={"label": wanted})
    finally:
        client.close()


def step_to_end(api: str, job_id: str, timeout: float) -> dict[str, Any]:
    """Open each gate a step-mode job waits at on its requester ``api`` until the job
    ends; its description."""

    def stepped() -> dict[str, Any] | None:
        answer = describe_job(api, job_id)
        if answer["job"]["state"] in TERMINAL:
            return answer
        if answer["gate"] is not None:
            httpx.post(f"{api}/api/v1/jobs/{job_id}/step", timeout=30)
        return None

    return wait_until(stepped, timeout, 0.1, f"step-mode job {job_id} to end")


@dataclass
class Devstack:
    """A devstack in ``state_dir``, driven through its CLI as a user would."""

    state_dir: Path
    nodes: int
    up_args: tuple[str, ...] = ()  # more `devstack up` options, e.g. ("--slots", "1")
    state: ClusterState | None = None
    up_result: subprocess.CompletedProcess[str] | None = None
    # Every node process and peer id ever recorded, so a restarted node's old
    # process is checked at teardown too.
    _pids: dict[int, float] = field(default_factory=dict)
    _peer_ids: set[str] = field(default_factory=set)

    def run(
        self, *args: str, timeout: float = CLI_TIMEOUT_S, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``devstack --state-dir DIR ARGS...`` and return the finished process."""
        argv = [sys.executable, "-m", "devstack.cli", "--state-dir", str(self.state_dir), *args]
        env = {k: v for k, v in os.environ.items() if k != "DEVSTACK_DIR"}
        result = subprocess.run(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert result.returncode == 0, describe_failure(result)
        return result

    def up(self, timeout: float = UP_TIMEOUT_S) -> ClusterState:
        self.up_result = self.run(
            "up", "--nodes", str(self.nodes), "--detach", *self.up_args, timeout=timeout
        )
        self.reload()  # record whatever was started, even if up failed
        assert self.up_result.returncode == 0, describe_failure(self.up_result)
        assert self.state is not None and len(self.state.nodes) == self.nodes
        return self.state

    def reload(self) -> ClusterState | None:
        """Re-read cluster.json (a restart changes a node's pid) and remember its nodes."""
        self.state = st.load(self.state_dir)
        if self.state is not None:
            for node in self.state.nodes:
                self._pids[node.pid] = node.started
                self._peer_ids.add(node.peer_id)
        return self.state

    def api(self, index: int) -> str:
        assert self.state is not None
        return self.state.nodes[index].api

    @property
    def apis(self) -> list[str]:
        assert self.state is not None
        return [n.api for n in self.state.nodes]

    def live_pids(self) -> list[int]:
        return [pid for pid, started in self._pids.items() if st.is_alive(pid, started)]

    def node_named(self, name: str) -> NodeEntry:
        assert self.state is not None
        return next(n for n in self.state.nodes if n.name == name)

    def wait_ready(self, node: NodeEntry, timeout: float = 120) -> None:
        """Until ``node`` answers healthy and ready (back in the network)."""
        wait_until(
            lambda: (h := get_json(f"{node.api}/api/v1/healthz"))["ok"] and h["ready"],
            timeout,
            0.2,
            f"{node.name} to be ready",
            ignore=(httpx.HTTPError,),
        )

    def wait_whole(self, timeout: float = 90) -> None:
        """Until every node sees every other as a live member of the network."""
        assert self.state is not None
        size = len(self.state.nodes)
        for node in self.state.nodes:
            wait_until(
                lambda n=node: get_json(f"{n.api}/api/v1/healthz")["network_size"] >= size,
                timeout,
                0.2,
                f"{node.name} to see all {size} nodes",
                ignore=(httpx.HTTPError,),
            )

    def kill(self, node: NodeEntry) -> None:
        """SIGKILL the node (a process this devstack started), once it is seen
        running, and wait until it is gone. :meth:`restart` brings it back."""
        assert st.is_alive(node.pid, node.started), f"{node.name} is not running"
        os.kill(node.pid, signal.SIGKILL)
        wait_until(
            lambda: not st.is_alive(node.pid, node.started),
            30,
            message=f"{node.name} (pid {node.pid}) to die",
        )

    def restart(self, node: NodeEntry, *overrides: str) -> NodeEntry:
        """``devstack restart`` the node (``overrides``: more ``bacalhau-node run``
        options for it alone), whether it runs or was killed; its new entry, once it is
        ready and every node sees the whole network again. A test that stops or
        reconfigures a node of a shared cluster calls this at its end, so the next test
        finds the cluster whole whatever the order."""
        extra = ("--", *overrides) if overrides else ()
        result = self.run("restart", node.name, *extra, check=True)
        assert node.name in result.stdout, result.stdout
        self.reload()
        fresh = self.node_named(node.name)
        assert fresh.pid != node.pid
        self.wait_ready(fresh)
        self.wait_whole()
        return fresh

    def down_and_check(self) -> None:
        """``devstack down``; then assert no node process and no container is left."""
        self.reload()
        down_error = ""
        try:
            result = self.run("down", timeout=DOWN_TIMEOUT_S)
            if result.returncode != 0:
                down_error = describe_failure(result)
        except subprocess.TimeoutExpired as exc:
            down_error = f"devstack down timed out: {exc}"
        if down_error:
            # Clean up anyway so one failure does not leak a cluster into the next test.
            from devstack.cluster import down

            with contextlib.suppress(Exception):
                down(self.state_dir, say=lambda _m: None)
        assert not down_error, down_error
        assert st.load(self.state_dir) is None, "devstack down left cluster.json behind"
        # SIGTERM/SIGKILL were sent and waited for by `down`; allow the kernel a moment.
        try:
            wait_until(lambda: not self.live_pids(), timeout=30, message="node processes to end")
        except AssertionError:
            raise AssertionError(
                f"node processes still alive after `devstack down`: {self.live_pids()}"
            ) from None
        left = labelled_containers(self._peer_ids)
        assert left == [], f"containers left after `devstack down`: {left}"


def describe_failure(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{' '.join(map(str, result.args[3:]))} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-3000:]}"
    )


@contextlib.contextmanager
def running_devstack(
    state_dir: Path, nodes: int, stack: Devstack | None = None
) -> Iterator[Devstack]:
    """Bring up a devstack of ``nodes`` nodes (or ``stack``); always take it down and check."""
    stack = stack or Devstack(state_dir=state_dir, nodes=nodes)
    try:
        stack.up()
        yield stack
    finally:
        stack.down_and_check()


@pytest.fixture
def utc() -> Iterator[None]:
    """Local time is UTC for the test (log times, so screens do not depend on the zone)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    """A 3-node devstack shared by one test module (the TUI's pilot tests)."""
    docker_client().close()
    with running_devstack(tmp_path_factory.mktemp("devstack3"), 3) as stack:
        yield stack


@pytest.fixture(scope="module")
def cluster5(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devstack]:
    """A 5-node devstack shared by one test module (real processes, libp2p, Docker)."""
    docker_client().close()
    with running_devstack(tmp_path_factory.mktemp("devstack5"), 5) as stack:
        yield stack
