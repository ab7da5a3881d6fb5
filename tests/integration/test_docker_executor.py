"""DockerExecutor against the real Docker daemon on this machine (no mocks).

Every test labels its containers with a fresh ``pyb-test=<uuid>`` and checks,
including stopped containers, that none is left behind.
"""

from __future__ import annotations

import struct
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import pytest
import trio

from devstack.image import ensure_base_image
from node.executors.base import MAX_LOG_BYTES, PHASES, ExecutorError, RunResult
from node.executors.docker import DockerExecutor, DockerExecutorStatistics, _Demux
from node.executors.linetail import LogRead
from node.executors.noop import NoopExecutor
from node.models import JobSpec, Resources
from node.output import RunOutput
from tests.conftest import wait_until_async

pytestmark = pytest.mark.timeout(120)

IMAGE = "busybox:latest"


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    try:
        c = docker.from_env()
    except docker.errors.DockerException as exc:
        pytest.skip(f"Docker daemon not reachable: {exc}")
    ensure_base_image(c, IMAGE)
    yield c
    c.close()


@pytest.fixture
def labels(client: docker.DockerClient) -> Iterator[dict[str, str]]:
    run_id = uuid.uuid4().hex
    yield {"pyb-test": run_id}
    # Clean up anything a failing test left, after the test has asserted.
    for c in client.containers.list(all=True, filters={"label": f"pyb-test={run_id}"}):
        c.remove(force=True)


def leftovers(client: docker.DockerClient, labels: dict[str, str]) -> list[str]:
    filters = {"label": ["py-bacalhau=1", f"pyb-test={labels['pyb-test']}"]}
    return [c.name for c in client.containers.list(all=True, filters=filters)]


T = TypeVar("T")


def with_executor(
    body: Callable[[DockerExecutor], Awaitable[T]],
    client: docker.DockerClient | None = None,
    labels: dict[str, str] | None = None,
    *,
    make: Callable[[], DockerExecutor] = DockerExecutor,
) -> tuple[DockerExecutor, T]:
    """Run ``body(ex)`` under trio with a fresh executor, always closing it.

    Returns the executor (closed) and what ``body`` returned, for checks that
    belong after ``aclose``. With ``client`` and ``labels``, also asserts that
    no labelled container was left behind.
    """
    outcome: list[tuple[DockerExecutor, T]] = []

    async def main() -> None:
        ex = make()
        try:
            outcome.append((ex, await body(ex)))
        finally:
            await ex.aclose()

    trio.run(main)
    if client is not None:
        assert labels is not None
        assert leftovers(client, labels) == []
    return outcome[0]


def spec(*command: str, **kw: object) -> JobSpec:
    return JobSpec(image=kw.pop("image", "busybox"), command=list(command), **kw)  # type: ignore[arg-type]


def test_echo_hello(tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]) -> None:
    async def body(ex: DockerExecutor) -> RunResult:
        return await ex.run("job-1", 0, spec("echo", "hello"), tmp_path / "r", labels=labels)

    ex, res = with_executor(body, client, labels)
    assert res.exit_code == 0
    assert res.results_dir == (tmp_path / "r").absolute()
    assert (tmp_path / "r" / "stdout").read_text() == "hello\n"
    assert (tmp_path / "r" / "stderr").read_bytes() == b""
    assert (tmp_path / "r" / "exitCode").read_text() == "0\n"
    assert not res.stdout_truncated and not res.stderr_truncated
    assert ex.statistics() == DockerExecutorStatistics(
        running=0, started=1, finished=1, failed=0, timed_out=0
    )


def test_nonzero_exit_is_a_result_and_streams_are_separate(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    async def body(ex: DockerExecutor) -> RunResult:
        return await ex.run(
            "job-2",
            1,
            spec("sh", "-c", "echo out; echo err >&2; exit 3"),
            tmp_path,
            labels=labels,
        )

    ex, res = with_executor(body, client, labels)
    assert res.exit_code == 3
    assert (tmp_path / "exitCode").read_text() == "3\n"
    assert (tmp_path / "stdout").read_text() == "out\n"
    assert (tmp_path / "stderr").read_text() == "err\n"
    assert ex.statistics().finished == 1


def test_outputs_env_and_entrypoint(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    async def body(ex: DockerExecutor) -> RunResult:
        job = JobSpec(
            image="busybox",
            entrypoint=["sh", "-c"],
            command=['echo "$GREETING" > /outputs/greeting.txt; echo "$GREETING"'],
            env={"GREETING": "hola mundo"},
        )
        return await ex.run("job-3", 0, job, tmp_path / "res", labels=labels)

    _, res = with_executor(body, client, labels)
    assert res.exit_code == 0
    assert (tmp_path / "res" / "outputs" / "greeting.txt").read_text() == "hola mundo\n"
    assert (tmp_path / "res" / "stdout").read_text() == "hola mundo\n"


def test_network_is_off_unless_asked(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    async def body(ex: DockerExecutor) -> tuple[RunResult, RunResult]:
        off = await ex.run("job-4", 0, spec("ls", "/sys/class/net"), tmp_path / "a", labels=labels)
        on = await ex.run(
            "job-4",
            1,
            spec("ls", "/sys/class/net", network=True),
            tmp_path / "b",
            labels=labels,
        )
        return off, on

    _, (off, on) = with_executor(body, client, labels)
    assert off.exit_code == on.exit_code == 0
    assert (tmp_path / "a" / "stdout").read_text().split() == ["lo"]
    assert "eth0" in (tmp_path / "b" / "stdout").read_text().split()


def test_cpu_and_memory_limits_apply(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    script = (
        "cat /sys/fs/cgroup/memory.max 2>/dev/null"
        " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes;"
        " cat /sys/fs/cgroup/cpu.max 2>/dev/null"
        " || echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)"
        " $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"
    )

    async def body(ex: DockerExecutor) -> RunResult:
        job = spec("sh", "-c", script, resources=Resources(cpu=0.5, memory=64 * 1024 * 1024))
        return await ex.run("job-5", 0, job, tmp_path, labels=labels)

    _, res = with_executor(body, client, labels)
    assert res.exit_code == 0, (tmp_path / "stderr").read_text()
    memory, cpu = (tmp_path / "stdout").read_text().splitlines()
    assert int(memory) == 64 * 1024 * 1024
    quota, period = (int(x) for x in cpu.split())
    assert quota / period == pytest.approx(0.5)


def test_missing_image_raises(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    image = f"pyb-no-such-image-{uuid.uuid4().hex[:8]}:v1"

    async def body(ex: DockerExecutor) -> None:
        assert not await ex.has_image(image)
        with pytest.raises(ExecutorError, match="not present on this node") as info:
            await ex.run("job-6", 0, spec("true", image=image), tmp_path, labels=labels)
        assert image in str(info.value)
        assert ex.statistics().failed == 1
        assert ex.statistics().started == 0

    with_executor(body, client, labels)


def test_command_missing_from_image_raises(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    async def body(ex: DockerExecutor) -> None:
        with pytest.raises(ExecutorError, match="no-such-binary"):
            await ex.run("job-6b", 0, spec("no-such-binary"), tmp_path, labels=labels)
        # A tiny CPU request is raised to Docker's floor instead of failing.
        res = await ex.run(
            "job-6c", 0, spec("true", resources=Resources(cpu=0.001)), tmp_path, labels=labels
        )
        assert res.exit_code == 0

    with_executor(body, client, labels)


def test_has_image(client: docker.DockerClient) -> None:
    async def body(ex: DockerExecutor) -> None:
        assert await ex.has_image("busybox")
        assert await ex.has_image("busybox:latest")
        assert not await ex.has_image("busybox:no-such-tag")
        assert not await ex.has_image("")

        # A cached positive answer needs no daemon round trip.
        def no_daemon(ref: str) -> bool:
            raise AssertionError(f"asked the daemon about {ref}")

        ex._has_image_sync = no_daemon  # type: ignore[method-assign]
        for _ in range(100):
            assert await ex.has_image("busybox")

    with_executor(body)


def test_a_run_that_finds_its_image_gone_forgets_it(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    tag = f"pyb-gone-{uuid.uuid4().hex[:10]}"
    client.images.get(IMAGE).tag(tag, "latest")

    async def body(ex: DockerExecutor) -> None:
        assert await ex.has_image(tag)  # cached from now on
        client.images.remove(f"{tag}:latest")  # the tag only
        spec = JobSpec(image=tag, command=["echo", "hi"])
        with pytest.raises(ExecutorError, match="not present"):
            await ex.run("job-gone", 0, spec, tmp_path / "r", labels=labels)
        assert not await ex.has_image(tag)

    with_executor(body, client, labels)


def test_unreachable_daemon(tmp_path: Path) -> None:
    def factory() -> docker.DockerClient:
        return docker.DockerClient(base_url=f"unix://{tmp_path}/no-docker.sock")

    async def body(ex: DockerExecutor) -> None:
        assert not await ex.has_image("busybox")
        with pytest.raises(ExecutorError, match="Docker daemon is unreachable"):
            await ex.run("job-7", 0, spec("true"), tmp_path / "r", labels={})

    with_executor(body, make=lambda: DockerExecutor(client_factory=factory))


def test_timeout_kills_and_removes(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    async def body(ex: DockerExecutor) -> None:
        # Longer than the test's own timeout: only the kill ends this run in time.
        with pytest.raises(ExecutorError, match=r"timed out after 1(\.0)?s"):
            await ex.run("job-8", 0, spec("sleep", "3600", timeout=1), tmp_path, labels=labels)
        stats = ex.statistics()
        assert (stats.timed_out, stats.failed, stats.finished, stats.running) == (1, 0, 0, 0)

    with_executor(body, client, labels)


def test_cancel_removes_container(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    async def body(ex: DockerExecutor) -> None:
        # Longer than the test's own timeout: only the cancellation ends this run in time.
        with trio.move_on_after(2) as scope:
            await ex.run("job-9", 0, spec("sleep", "3600"), tmp_path, labels=labels)
        assert scope.cancelled_caught
        assert leftovers(client, labels) == []
        assert ex.statistics().running == 0

    with_executor(body, client, labels)


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.05, 0.1, 0.2, 0.4])
def test_cancel_at_any_moment_leaves_nothing(
    delay: float, tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    """Cancel while the container is being created or started, not just while it runs."""

    async def body(ex: DockerExecutor) -> None:
        with trio.move_on_after(delay):
            await ex.run("job-10", 0, spec("sleep", "30"), tmp_path, labels=labels)

    with_executor(body, client, labels)


def test_concurrent_runs_and_cancel_of_a_group(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    async def body(ex: DockerExecutor) -> None:
        codes: dict[int, int] = {}

        async def one(shard: int, command: str) -> None:
            job = spec("sh", "-c", command)
            res = await ex.run("job-11", shard, job, tmp_path / str(shard), labels=labels)
            codes[shard] = res.exit_code

        async with trio.open_nursery() as nursery:
            for shard in range(4):
                nursery.start_soon(one, shard, f"exit {shard}")
        assert codes == {0: 0, 1: 1, 2: 2, 3: 3}
        codes.clear()
        with trio.move_on_after(1.5):
            async with trio.open_nursery() as nursery:
                for shard in range(10, 14):
                    nursery.start_soon(one, shard, "sleep 30")
        assert codes == {}
        stats = ex.statistics()
        assert (stats.running, stats.started, stats.finished) == (0, 8, 4)

    with_executor(
        body, client, labels, make=lambda: DockerExecutor(thread_limiter=trio.CapacityLimiter(8))
    )


def test_stdout_is_truncated(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    async def body(ex: DockerExecutor) -> RunResult:
        job = spec("sh", "-c", f"head -c {3 * MAX_LOG_BYTES} /dev/zero; echo small >&2")
        return await ex.run("job-13", 0, job, tmp_path, labels=labels)

    _, res = with_executor(body, client, labels)
    assert res.exit_code == 0
    assert res.stdout_truncated and not res.stderr_truncated
    assert (tmp_path / "stdout").stat().st_size == MAX_LOG_BYTES
    assert (tmp_path / "stderr").read_text() == "small\n"


# -- phases, one-request logs and deferred removal ------------------------------------


def test_live_output_comes_while_the_container_runs_and_ends_with_the_run(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    """A run given an output gets each line as the container prints it (the first
    while it still runs), the last ones, a line without a newline included, before
    ``run`` returns; a flood is bounded, every line either kept or counted dropped."""

    async def body(ex: DockerExecutor) -> None:
        output = RunOutput()
        seen: list[str] = []
        script = "echo one; echo two >&2; sleep 3; printf last"
        async with trio.open_nursery() as nursery:
            done = trio.Event()

            async def run() -> None:
                await ex.run(
                    "job-out", 0, spec("sh", "-c", script), tmp_path, labels=labels, output=output
                )
                done.set()

            nursery.start_soon(run)

            def pulled() -> bool:
                output.pull()
                return output.statistics().pending > 0

            await wait_until_async(pulled, 60, 0.05, "the first lines while it runs")
            first, _ = output.take()
            assert not done.is_set(), "the first lines came only once the run ended"
            seen.extend(f"{line.stream}:{line.line}" for line in first)
            await done.wait()
        lines, dropped = output.take()
        seen.extend(f"{line.stream}:{line.line}" for line in lines)
        assert sorted(seen[:2]) == ["stderr:two", "stdout:one"]
        assert seen[2:] == ["stdout:last"]
        assert dropped == 0

        flood = RunOutput()
        count = 300_000
        flood_spec = spec("sh", "-c", f"yes 'flood line' | head -n {count}")
        result = await ex.run(
            "job-flood", 0, flood_spec, tmp_path / "flood", labels=labels, output=flood
        )
        assert result.exit_code == 0
        figures = flood.statistics()
        assert figures.lines == count
        assert figures.pending <= 2000 and figures.dropped >= count - 2000
        kept, lost = flood.take()
        assert kept[-1].line == "flood line"
        assert lost == figures.dropped  # said with the first batch

    with_executor(body, client, labels)


def test_phases_ms_names_every_phase(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    async def body(ex: DockerExecutor) -> RunResult:
        return await ex.run("job-20", 0, spec("echo", "hello"), tmp_path, labels=labels)

    _, res = with_executor(body, client, labels)
    assert tuple(res.phases_ms) == PHASES
    assert all(isinstance(ms, float) and ms >= 0 for ms in res.phases_ms.values())
    with pytest.raises(TypeError):
        res.phases_ms["create"] = 0.0  # type: ignore[index]
    # Timings are figures, not part of what a result is.
    assert res == RunResult(exit_code=0, results_dir=tmp_path.absolute())


def test_noop_executor_reports_phases(tmp_path: Path) -> None:
    res = trio.run(lambda: NoopExecutor().run("job-21", 0, spec("echo", "hi"), tmp_path, labels={}))
    assert tuple(res.phases_ms) == PHASES
    assert (tmp_path / "stdout").read_text() == "echo hi\n"


def multiplexed(*frames: tuple[int, bytes]) -> bytes:
    return b"".join(struct.pack(">BxxxL", stream, len(data)) + data for stream, data in frames)


@pytest.mark.parametrize("block", [1, 3, 8, 9, 13, 4096])
def test_demux_splits_streams_across_any_block_boundary(block: int) -> None:
    stream = multiplexed(
        (1, b"out-1\n"), (2, b"err-1\n"), (1, b""), (3, b"ignored"), (1, b"x" * 20), (2, b"e")
    )
    demux = _Demux((1, 2), limit=16)
    for i in range(0, len(stream), block):
        demux.feed(stream[i : i + block])
    assert demux.buffers == {1: b"out-1\n" + b"x" * 10, 2: b"err-1\ne"}
    assert demux.full


def test_interleaved_streams_stay_separate_in_one_read(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    script = "i=0; while [ $i -lt 300 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done"

    async def body(ex: DockerExecutor) -> RunResult:
        return await ex.run("job-22", 0, spec("sh", "-c", script), tmp_path, labels=labels)

    _, res = with_executor(body, client, labels)
    assert (tmp_path / "stdout").read_text() == "".join(f"out{i}\n" for i in range(300))
    assert (tmp_path / "stderr").read_text() == "".join(f"err{i}\n" for i in range(300))
    assert not res.stdout_truncated and not res.stderr_truncated


@pytest.mark.parametrize(
    ("script", "stdout", "stderr"),
    [
        # Both streams overflow, written at the same time (their frames interleave).
        ("yes out | head -c {n} & yes err | head -c {n} >&2; wait", b"out\n", b"err\n"),
        # stderr overflows first; stdout's small tail comes after it.
        ("yes err | head -c {n} >&2; echo small", b"small\n", b"err\n"),
    ],
    ids=["both-overflow", "stderr-overflows-first"],
)
def test_each_stream_is_bounded_and_kept_apart(
    script: str,
    stdout: bytes,
    stderr: bytes,
    tmp_path: Path,
    client: docker.DockerClient,
    labels: dict[str, str],
) -> None:
    job = spec("sh", "-c", script.format(n=2 * MAX_LOG_BYTES))

    async def body(ex: DockerExecutor) -> RunResult:
        return await ex.run("job-23", 0, job, tmp_path, labels=labels)

    _, res = with_executor(body, client, labels)
    assert res.exit_code == 0
    for name, pattern, cut in (
        ("stdout", stdout, res.stdout_truncated),
        ("stderr", stderr, res.stderr_truncated),
    ):
        data = (tmp_path / name).read_bytes()
        if cut:
            assert data == (pattern * (MAX_LOG_BYTES // len(pattern) + 1))[:MAX_LOG_BYTES]
        else:
            assert data == pattern
    assert res.stderr_truncated
    assert res.stdout_truncated == (stdout == b"out\n")


def test_finished_run_is_removed_without_aclose(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    """The removal a result leaves to the remover threads happens on its own, and
    ``wait_removed`` returns once it has."""

    async def body(ex: DockerExecutor) -> None:
        await ex.run("job-24", 0, spec("true"), tmp_path / "a", labels=labels)
        await wait_until_async(lambda: not leftovers(client, labels), 30, 0.05, "the removal")
        await ex.run("job-24", 1, spec("true"), tmp_path / "b", labels=labels)
        await ex.wait_removed()
        assert leftovers(client, labels) == []
        assert ex.statistics().removing == 0

    with_executor(body, client, labels)


def test_aclose_waits_for_queued_removals_and_executor_is_reusable(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    async def body(ex: DockerExecutor) -> None:
        async with trio.open_nursery() as nursery:
            for shard in range(4):
                job = spec("true")
                run = partial(ex.run, labels=labels)
                nursery.start_soon(run, "job-25", shard, job, tmp_path / str(shard))
        await ex.aclose()
        assert leftovers(client, labels) == []
        assert ex.statistics().removing == 0
        # A closed executor makes a new client and new remover threads when used.
        res = await ex.run("job-25", 9, spec("echo", "again"), tmp_path / "9", labels=labels)
        assert res.exit_code == 0

    ex, _ = with_executor(body, client, labels)
    assert (tmp_path / "9" / "stdout").read_text() == "again\n"
    assert ex.statistics().started == 5


def test_timeout_and_errors_remove_before_raising(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    async def body(ex: DockerExecutor) -> None:
        with pytest.raises(ExecutorError, match="timed out"):
            await ex.run("job-26", 0, spec("sleep", "30", timeout=0.5), tmp_path, labels=labels)
        assert leftovers(client, labels) == []
        with pytest.raises(ExecutorError, match="no-such-binary"):
            await ex.run("job-26", 1, spec("no-such-binary"), tmp_path, labels=labels)
        assert leftovers(client, labels) == []
        assert ex.statistics().removing == 0

    with_executor(body, client, labels)


class GatedCollect(DockerExecutor):
    """Holds each run at the start of its output collection (the container has exited)
    until the test lets it go, so the test can cancel it right there."""

    def __init__(self) -> None:
        super().__init__()
        self.collecting = threading.Event()
        self.go_on = threading.Event()

    def _collect_sync(self, *args: Any) -> tuple[bool, bool, LogRead]:
        self.collecting.set()
        self.go_on.wait(60)
        return super()._collect_sync(*args)


def test_cancel_while_collecting_returns_the_result_and_leaves_nothing(
    tmp_path: Path, client: docker.DockerClient, labels: dict[str, str]
) -> None:
    """Cancelled once the container has exited, a run finishes collecting and returns
    its result (the caller sees the cancellation at its next checkpoint); the
    container's removal is queued as for any result."""

    async def body(ex: DockerExecutor) -> None:
        assert isinstance(ex, GatedCollect)
        scope = trio.CancelScope()
        results: list[RunResult] = []

        async def run() -> None:
            with scope:
                job = spec("echo", "hello")
                results.append(await ex.run("job-27", 0, job, tmp_path, labels=labels))
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            assert await trio.to_thread.run_sync(ex.collecting.wait, 60)
            scope.cancel()
            ex.go_on.set()
        assert scope.cancelled_caught
        assert [r.exit_code for r in results] == [0]
        assert (tmp_path / "stdout").read_text() == "hello\n"
        await ex.wait_removed()
        assert leftovers(client, labels) == []
        stats = ex.statistics()
        assert (stats.running, stats.finished, stats.removing) == (0, 1, 0)

    with_executor(body, client, labels, make=GatedCollect)
