"""The ``docker`` executor: one shard of a job runs as one local Docker container.

This module owns the container's whole life: create (from a local image only; no
registry is assumed), attach, start, wait with the job's timeout, collect bounded
stdout and stderr, write the results tree, and force-remove the container. It also owns
the Docker SDK client, created lazily in a worker thread on first use (the node
is forked from a launcher, so no client may exist at import time) and closed by
:meth:`DockerExecutor.aclose`.

No container is left behind by a run. When :meth:`DockerExecutor.run` raises
(an error, the job's timeout, a trio/anyio cancellation), the container is
force-removed before it does. When it returns a result, the container has
exited and its forced removal is queued to the executor's remover threads, off
the run's critical path; :meth:`DockerExecutor.wait_removed` and
:meth:`DockerExecutor.aclose` wait for those removals, and so does the
interpreter at exit. Only a process killed outright can leave a container, and
it is labelled ``py-bacalhau=1``.

What a container prints is read from its attach stream, not from a log: the
container is made with Docker's ``none`` log driver and attached before it starts,
and a thread of the run's own reads the stream until it ends (the container
exited, or was removed), keeping the first :data:`MAX_LOG_BYTES` of stdout and of
stderr for the results. The daemon then only copies bytes: at 10 MB/s of output
it spends about a tenth of the CPU its ``json-file`` logging costs, and the
stream is always drained, so a chatty container is never held up by its reader.
A run given a :class:`~node.output.RunOutput` lets it pull the newest lines
while the container runs (:mod:`node.executors.linetail`; the rest are counted
as dropped), and adds the last ones before it returns.

Every other blocking SDK call runs in a worker thread via
``anyio.to_thread.run_sync`` under the executor's thread limiter, so the node's
trio loop never blocks. The SDK is used at its low level (``client.api``): the
high-level models inspect the container again on create and on each logs read,
which a run does not need. Containers carry the caller's labels plus
``py-bacalhau=1`` so strays can be found. :meth:`DockerExecutor.container_pids`
tells the node's resource sampler the host PIDs of the containers running now.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions
from docker.types import Mount
from docker.utils import parse_repository_tag

from node.executors.base import MAX_LOG_BYTES, Executor, ExecutorError, RunResult, write_results
from node.executors.linetail import LineTail, LogRead
from node.models import INPUTS_ROOT, JobSpec
from node.output import RunOutput
from profiles.locks import ThreadLock

log = logging.getLogger(__name__)

#: Label every container started here carries (in addition to the caller's).
OWNER_LABEL = ("py-bacalhau", "1")
# Which node and job a container runs for: what a restarted node and `devstack down`
# find leftovers by.
NODE_LABEL = "py-bacalhau.node"
JOB_LABEL = "py-bacalhau.job"
#: How long a positive :meth:`DockerExecutor.has_image` answer is trusted (a run that
#: finds the image gone forgets it at once). Asking the daemon on every offer put a
#: Docker API call on the critical path of each node's first job in a while.
IMAGE_CACHE_TTL_S = 60.0
#: Longest single blocking wait on a container; bounds how long a worker thread
#: outlives a cancelled run.
WAIT_POLL_S = 1.0
#: Smallest CPU limit Docker accepts (0.01 core); smaller requests are raised to it.
MIN_NANO_CPUS = 10_000_000
#: Threads that remove finished runs' containers (outside the thread limiter).
REMOVER_THREADS = 2
_REMOVE_ATTEMPTS = 3
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")
# Docker's multiplexed stream (no TTY): per frame, the stream (1 stdout, 2 stderr),
# 3 bytes of padding and the payload's length, then the payload.
_FRAME_HEADER = struct.Struct(">BxxxL")
_STDOUT = 1
_STDERR = 2
_READ_BLOCK = 1 << 16
#: Newest lines kept between two pulls of a live output; older ones count as dropped.
OUTPUT_KEEP_LINES = 500
#: How long a stream may go on after its container exited before it is cut: the
#: daemon ends it at once, so only a wedged daemon waits this long.
ATTACH_END_S = 10.0
#: How long a closed stream's thread is waited for.
ATTACH_CLOSE_S = 5.0
_T = TypeVar("_T")


@dataclass(frozen=True)
class DockerExecutorStatistics:
    """Counters since the executor was made.

    ``running``: runs in progress. ``started``: containers started.
    ``finished``: runs that produced a result (any exit code). ``failed``: runs
    that raised :class:`ExecutorError` other than a timeout. ``timed_out``: runs
    killed at the job's timeout. ``removing``: finished runs' containers whose
    removal is queued or under way.
    """

    running: int
    started: int
    finished: int
    failed: int
    timed_out: int
    removing: int = 0


class _Timeout(Exception):
    """Internal: the container outlived the job's timeout."""


class _Handle:
    """What one run knows of its container; written from worker threads."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.create_attempted = False
        self.client: docker.DockerClient | None = None
        self.container_id: str | None = None
        self.attached: _Attached | None = None  # its output, read as it comes

    @property
    def api(self) -> docker.APIClient:
        assert self.client is not None
        return self.client.api


class _Clock:
    """Wall ms per phase of one run, each from the end of the previous one, so the
    phases add up to the run and thread hand-offs are charged to the phase after."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = (now - self._last) * 1000.0
        self._last = now


class _Demux:
    """Splits a multiplexed stream fed block by block, keeping the first ``limit``
    bytes of each of ``streams`` and dropping everything else on arrival; each
    payload of those streams also goes to ``on_payload`` when given."""

    def __init__(
        self,
        streams: Collection[int],
        limit: int,
        on_payload: Callable[[int, bytes], None] | None = None,
    ) -> None:
        self.buffers = {stream: bytearray() for stream in streams}
        self._limit = limit
        self._on_payload = on_payload
        self._header = bytearray()
        self._target: bytearray | None = None
        self._stream = 0
        self._left = 0

    @property
    def full(self) -> bool:
        """Whether some stream has reached the limit."""
        return any(len(buffer) >= self._limit for buffer in self.buffers.values())

    def feed(self, block: bytes) -> None:
        view = memoryview(block)
        while view:
            if self._left == 0:
                # Headers may straddle blocks, so they are gathered before parsing.
                missing = _FRAME_HEADER.size - len(self._header)
                self._header += view[:missing]
                view = view[missing:]
                if len(self._header) < _FRAME_HEADER.size:
                    return
                self._stream, self._left = _FRAME_HEADER.unpack(self._header)
                self._header.clear()
                self._target = self.buffers.get(self._stream)
                continue
            payload = view[: self._left]
            view = view[len(payload) :]
            self._left -= len(payload)
            if self._target is not None:
                self._target += payload[: self._limit - len(self._target)]
                if self._on_payload is not None:
                    self._on_payload(self._stream, bytes(payload))


class _Attached:
    """A container's attach stream, read to its end by a thread of its own.

    Made (attached) before the container starts, so nothing it prints is missed;
    the stream ends once the container has exited, or was removed. Keeps the first
    ``MAX_LOG_BYTES + 1`` bytes of stdout and of stderr (so truncation shows) and,
    with a ``tail``, feeds it every piece. :meth:`close` ends the reading early.
    """

    def __init__(self, sock: Any, name: str, tail: LineTail | None) -> None:
        self._sock = sock
        self.tail = tail
        feed = None if tail is None else self._feed
        self.demux = _Demux((_STDOUT, _STDERR), MAX_LOG_BYTES + 1, feed)
        self.error: BaseException | None = None
        self._reader = threading.Thread(target=self._read, name=f"attach {name}", daemon=True)
        self._reader.start()

    def _feed(self, stream: int, data: bytes) -> None:
        assert self.tail is not None
        self.tail.feed("stderr" if stream == _STDERR else "stdout", data)

    def _read(self) -> None:
        try:
            while block := self._sock.read(_READ_BLOCK):
                self.demux.feed(block)
        except (OSError, ValueError) as exc:  # ValueError: read after close()
            self.error = exc

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the stream's end; whether it ended."""
        self._reader.join(timeout)
        return not self._reader.is_alive()

    def close(self) -> None:
        """Stop reading (the thread ends at once) and close the stream."""
        raw = getattr(self._sock, "_sock", self._sock)
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()
        self._reader.join(ATTACH_CLOSE_S)

    def output(self) -> tuple[bytes, bytes]:
        """The stdout and stderr kept (call once the stream ended)."""
        return bytes(self.demux.buffers[_STDOUT]), bytes(self.demux.buffers[_STDERR])


def normalise_image(image: str) -> str:
    """``image`` as Docker resolves it: a bare name gets ``:latest``."""
    repository, tag = parse_repository_tag(image)
    return f"{repository}:latest" if not tag else image


def _daemon_error(exc: BaseException) -> ExecutorError:
    return ExecutorError(f"the Docker daemon is unreachable: {exc}")


def _refused(action: str, exc: docker.errors.APIError) -> ExecutorError:
    return ExecutorError(f"docker could not {action}: {exc.explanation or exc}")


def _is_read_timeout(exc: BaseException) -> bool:
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return True
    return isinstance(exc, requests.exceptions.ConnectionError) and any(
        isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args
    )


class DockerExecutor(Executor):
    """Runs shards as local Docker containers; see the module docstring.

    ``client_factory`` makes the SDK client (called once, lazily, in a worker
    thread); ``thread_limiter`` bounds the worker threads this executor uses
    (anyio's default limiter when None), but for its :data:`REMOVER_THREADS`.
    """

    name = "docker"

    def __init__(
        self,
        *,
        client_factory: Callable[[], docker.DockerClient] = docker.from_env,
        thread_limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self._client_factory = client_factory
        self._limiter = thread_limiter
        self._client: docker.DockerClient | None = None
        self._client_lock = ThreadLock("docker.client")
        self._image_cache: dict[str, float] = {}
        self._running = 0
        self._started = 0
        self._finished = 0
        self._failed = 0
        self._timed_out = 0
        # Running containers' ids, and the host PID of each one's main process once
        # looked up (0: it had exited). Touched on the event loop only.
        self._live: set[str] = set()
        self._pids: dict[str, int] = {}
        # Deferred removals, made lazily (no thread may exist before the fork) and
        # touched on the event loop only.
        self._remover: concurrent.futures.ThreadPoolExecutor | None = None
        self._removals: set[concurrent.futures.Future[None]] = set()

    # -- plumbing ---------------------------------------------------------------

    def _get_client(self) -> docker.DockerClient:
        """The SDK client, made on first use (worker threads only).

        Raises :class:`ExecutorError` if the daemon cannot be reached.
        """
        with self._client_lock:
            if self._client is None:
                try:
                    self._client = self._client_factory()
                except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                    raise _daemon_error(exc) from exc
            return self._client

    async def _thread(self, func: Callable[..., _T], *args: Any, abandon: bool = False) -> _T:
        return await anyio.to_thread.run_sync(
            func, *args, abandon_on_cancel=abandon, limiter=self._limiter
        )

    def _pending_removals(self) -> set[concurrent.futures.Future[None]]:
        self._removals = {future for future in self._removals if not future.done()}
        return self._removals

    def statistics(self) -> DockerExecutorStatistics:
        """A snapshot of this executor's counters."""
        return DockerExecutorStatistics(
            running=self._running,
            started=self._started,
            finished=self._finished,
            failed=self._failed,
            timed_out=self._timed_out,
            removing=len(self._pending_removals()),
        )

    # -- images -----------------------------------------------------------------

    def _has_image_sync(self, ref: str) -> bool:
        try:
            self._get_client().images.get(ref)
        except docker.errors.ImageNotFound:
            return False
        except (ExecutorError, docker.errors.DockerException, requests.exceptions.RequestException):
            log.warning("docker: cannot check for image %r", ref, exc_info=True)
            return False
        return True

    async def has_image(self, image: str) -> bool:
        """Whether ``image`` (bare names mean ``:latest``) exists locally.

        Positive answers are cached for :data:`IMAGE_CACHE_TTL_S`, or until a run finds
        the image missing; negative ones are not cached. Never raises: a daemon error
        counts as "no".
        """
        if not image.strip():
            return False
        ref = normalise_image(image)
        now = time.monotonic()
        expires = self._image_cache.get(ref)
        if expires is not None and expires > now:
            return True
        found = await self._thread(self._has_image_sync, ref)
        if found:
            self._image_cache[ref] = time.monotonic() + IMAGE_CACHE_TTL_S
        else:
            self._image_cache.pop(ref, None)
        return found

    def _images_sync(self) -> list[str]:
        client = self._get_client()
        try:
            images = client.api.images()  # one call; tags only, no per-image inspect
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise _daemon_error(exc) from exc
        tags = {tag for image in images for tag in image.get("RepoTags") or []}
        return sorted(tags - {"<none>:<none>"})

    async def images(self) -> list[str]:
        """The tags of the images this node has locally, sorted (what jobs may name).

        Raises :class:`ExecutorError` if the daemon cannot be reached.
        """
        return await self._thread(self._images_sync)

    # -- one run ------------------------------------------------------------------

    def _create_and_start(
        self,
        handle: _Handle,
        spec: JobSpec,
        outputs: Path,
        inputs: Path | None,
        labels: dict[str, str],
        clock: _Clock,
        follow: bool,
    ) -> None:
        outputs.mkdir(parents=True, exist_ok=True)
        handle.client = self._get_client()
        api = handle.api
        resources = spec.resources
        mounts = [Mount(target="/outputs", source=str(outputs), type="bind", read_only=False)]
        if inputs is not None:
            mounts.append(
                Mount(
                    target=INPUTS_ROOT, source=str(inputs.absolute()), type="bind", read_only=True
                )
            )
        # Output is read from the attach stream (see the module docstring), not logged.
        host_config: dict[str, Any] = {"mounts": mounts, "log_config": {"Type": "none"}}
        if not spec.network:
            host_config["network_mode"] = "none"
        if resources.cpu > 0:
            # Docker's CFS quota floor is 0.01 CPU; below it the start fails.
            host_config["nano_cpus"] = max(MIN_NANO_CPUS, int(resources.cpu * 1e9))
        if resources.memory > 0:
            host_config["mem_limit"] = resources.memory
        handle.create_attempted = True
        try:
            created = api.create_container(
                spec.image,
                command=list(spec.command) or None,
                entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
                environment=dict(spec.env),
                labels={**labels, OWNER_LABEL[0]: OWNER_LABEL[1]},
                name=handle.name,
                stdin_open=False,
                tty=False,
                host_config=api.create_host_config(**host_config),
            )
        except docker.errors.ImageNotFound as exc:
            self._image_cache.pop(normalise_image(spec.image), None)
            raise ExecutorError(
                f"image {spec.image!r} is not present on this node "
                "(no registry is reachable; build or import it locally)"
            ) from exc
        except docker.errors.APIError as exc:
            raise _refused("create the container", exc) from exc
        except requests.exceptions.RequestException as exc:
            raise _daemon_error(exc) from exc
        handle.container_id = created["Id"]
        try:
            sock = api.attach_socket(
                handle.container_id, params={"stdout": 1, "stderr": 1, "stream": 1}
            )
        except docker.errors.APIError as exc:
            raise _refused("attach to the container", exc) from exc
        except requests.exceptions.RequestException as exc:
            raise _daemon_error(exc) from exc
        tail = LineTail(OUTPUT_KEEP_LINES) if follow else None
        handle.attached = _Attached(sock, handle.name, tail)
        clock.lap("create")
        try:
            api.start(handle.container_id)
        except docker.errors.APIError as exc:
            raise _refused("start the container", exc) from exc
        except requests.exceptions.RequestException as exc:
            raise _daemon_error(exc) from exc
        clock.lap("start")

    @staticmethod
    def _wait_sync(handle: _Handle, timeout: float) -> int | None:
        """The exit code, or None if the container still runs after ``timeout``."""
        try:
            status = handle.api.wait(handle.container_id, timeout=timeout)
        except requests.exceptions.RequestException as exc:
            if _is_read_timeout(exc):
                return None
            raise _daemon_error(exc) from exc
        except docker.errors.APIError as exc:
            raise _refused("wait for the container", exc) from exc
        return int(status.get("StatusCode", -1))

    async def _wait(self, handle: _Handle, timeout: float) -> int:
        """The exit code; kills the container and raises :class:`_Timeout` once it
        has run ``timeout`` seconds. Each blocking wait is short and abandoned on
        cancellation, so a cancelled run goes on to remove the container at once."""
        deadline = anyio.current_time() + timeout
        while True:
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                await self._thread(self._kill_sync, handle)
                raise _Timeout
            exit_code = await self._thread(
                self._wait_sync, handle, min(WAIT_POLL_S, remaining), abandon=True
            )
            if exit_code is not None:
                return exit_code

    @staticmethod
    def _collect_sync(
        handle: _Handle, results_dir: Path, exit_code: int, clock: _Clock
    ) -> tuple[bool, bool, LogRead]:
        """Once the exited container's stream has ended: write the results tree; which
        logs were cut, and the last lines for the live output."""
        attached = handle.attached
        assert attached is not None
        if not attached.join(ATTACH_END_S):
            log.warning("docker: the output of %s did not end with it; cut", handle.name)
            attached.close()
        if attached.error is not None:
            raise ExecutorError(f"the container's output could not be read: {attached.error}")
        attached.close()  # ended: this lets the connection go
        stdout, stderr = attached.output()
        last = attached.tail.take(final=True) if attached.tail is not None else LogRead()
        clock.lap("logs")
        cut = write_results(results_dir, stdout, stderr, exit_code)
        clock.lap("outputs")
        return *cut, last

    @staticmethod
    def _kill_sync(handle: _Handle) -> None:
        # Already gone or exiting is fine: the forced remove settles it.
        with contextlib.suppress(
            docker.errors.DockerException, requests.exceptions.RequestException
        ):
            handle.api.kill(handle.container_id)

    def _remove_sync(self, handle: _Handle) -> None:
        """Force-remove the run's container (by id, else by name); never raises."""
        if not handle.create_attempted:
            return
        ref = handle.container_id or handle.name
        for attempt in range(1, _REMOVE_ATTEMPTS + 1):
            try:
                client = handle.client or self._get_client()
                client.api.remove_container(ref, force=True, v=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if exc.status_code == 409 and "in progress" in str(exc):
                    return
                error: BaseException = exc
            except (ExecutorError, requests.exceptions.RequestException) as exc:
                error = exc
            if attempt == _REMOVE_ATTEMPTS:
                log.error("docker: could not remove container %s: %s", ref, error)
                return
            time.sleep(0.2 * attempt)

    def _remove_later(self, handle: _Handle) -> bool:
        """Queue the removal of an exited container to the remover threads; False
        if they cannot take it (e.g. at interpreter shutdown)."""
        try:
            if self._remover is None:
                self._remover = concurrent.futures.ThreadPoolExecutor(
                    REMOVER_THREADS, thread_name_prefix="docker-remove"
                )
            future = self._remover.submit(self._remove_sync, handle)
        except RuntimeError:
            log.debug("docker: removing %s on the caller's time", handle.name, exc_info=True)
            return False
        self._pending_removals().add(future)
        return True

    async def run(
        self,
        job_id: str,
        shard: int,
        spec: JobSpec,
        results_dir: Path,
        *,
        labels: dict[str, str],
        inputs: Path | None = None,
        output: RunOutput | None = None,
    ) -> RunResult:
        """Run the shard in a container; write ``stdout``, ``stderr``, ``exitCode``
        and ``outputs/`` under ``results_dir``. ``inputs`` is mounted read-only at
        /inputs. ``output``: where the lines it prints go while it runs (see the
        module docstring); the last of them are there when this returns.

        Guarantees: when this raises (including ``Cancelled``), the container
        has been force-removed first; a cancellation that arrives while the
        exited container's output is being collected lets the run finish and
        return (the caller sees it at its next checkpoint). When this returns,
        the container has exited and its forced removal is queued to the
        executor's remover threads (so ``remove`` in ``phases_ms`` is about 0,
        unless those could not take it and it was removed here);
        :meth:`wait_removed` and :meth:`aclose` return only once every queued
        removal has ended, and ``statistics().removing`` counts those that have
        not. stdout and stderr are kept up to ``MAX_LOG_BYTES`` each, as they come
        from the attach stream (what goes beyond is read and dropped, so the
        container never waits on its reader). A non-zero
        exit code is a result. ``phases_ms`` says where the run's wall time went
        (see :class:`RunResult`).

        Raises :class:`ExecutorError` when the image is not local, the daemon is
        unreachable, Docker refuses the container (e.g. a bad resource limit or
        an entrypoint missing from the image), the shard outlives
        ``spec.timeout`` (it is killed first), its output cannot be read, or the
        results cannot be written.
        """
        clock = _Clock()
        results_dir = Path(results_dir).absolute()
        slug = _NAME_UNSAFE.sub("-", job_id)[:40] or "job"
        handle = _Handle(f"pyb-{slug}-{shard}-{secrets.token_hex(4)}")
        collected: tuple[int, bool, bool] | None = None
        self._running += 1
        try:
            await self._thread(
                self._create_and_start,
                handle,
                spec,
                results_dir / "outputs",
                inputs,
                labels,
                clock,
                output is not None,
            )
            assert handle.container_id is not None
            self._started += 1
            self._live.add(handle.container_id)
            tail = handle.attached.tail if handle.attached is not None else None
            if output is not None and tail is not None:
                output.follow(tail.take)
            exit_code = await self._wait(handle, spec.timeout)
            clock.lap("wait")
            stdout_cut, stderr_cut, last = await self._thread(
                self._collect_sync, handle, results_dir, exit_code, clock
            )
            if output is not None:
                output.follow(None)
                output.add(last.lines, last.skipped)
            collected = (exit_code, stdout_cut, stderr_cut)
        except _Timeout:
            self._timed_out += 1
            raise ExecutorError(f"timed out after {spec.timeout}s") from None
        except ExecutorError:
            self._failed += 1
            raise
        except (docker.errors.DockerException, OSError) as exc:
            self._failed += 1
            raise ExecutorError(f"the docker executor failed: {exc}") from exc
        finally:
            if output is not None:
                output.follow(None)
            if handle.container_id is not None:
                self._live.discard(handle.container_id)
            # A result needs nothing more from the container, so its removal can leave
            # the critical path; any other way out may leave it running: remove it now.
            if collected is None or not self._remove_later(handle):
                with anyio.CancelScope(shield=True):
                    await self._thread(self._remove_sync, handle)
                    if collected is None and handle.attached is not None:
                        await self._thread(handle.attached.close)  # the stream ended with it
            clock.lap("remove")
            self._running -= 1
        self._finished += 1
        exit_code, stdout_cut, stderr_cut = collected
        return RunResult(
            exit_code=exit_code,
            results_dir=results_dir,
            stdout_truncated=stdout_cut,
            stderr_truncated=stderr_cut,
            phases_ms=MappingProxyType(clock.phases),
        )

    # -- resource sampling --------------------------------------------------------

    def _pid_sync(self, container_id: str) -> int | None:
        try:
            state = self._get_client().api.inspect_container(container_id)["State"]
        except (ExecutorError, docker.errors.DockerException, requests.exceptions.RequestException):
            return None
        return int(state.get("Pid") or 0)

    async def container_pids(self) -> list[int]:
        """The host PID of each running container's main process.

        A container is inspected once (in a worker thread) and its PID kept while it
        runs; one that could not be inspected is tried again on the next call.
        """
        for gone in self._pids.keys() - self._live:
            del self._pids[gone]
        for container_id in self._live - self._pids.keys():
            pid = await self._thread(self._pid_sync, container_id)
            if pid is not None:
                self._pids[container_id] = pid
        return [pid for cid, pid in self._pids.items() if pid > 0 and cid in self._live]

    async def remove_leftovers(self, node_id: str) -> int:
        """Force-remove every container labelled as node ``node_id``'s (running or
        not): a node killed outright leaves its runs' containers behind."""
        try:
            client = await self._thread(self._get_client)
        except ExecutorError as exc:
            log.warning("leftover containers not removed: %s", exc)
            return 0
        return await self._thread(remove_containers_of, client, [node_id])

    # -- shutting down ------------------------------------------------------------

    async def wait_removed(self) -> None:
        """Wait until the removal of every container that finished runs queued has
        ended (removed, or given up after a few attempts and logged), including
        removals queued meanwhile. Cancelling this stops the waiting, not the
        removals."""
        while pending := set(self._pending_removals()):
            await self._thread(concurrent.futures.wait, pending, abandon=True)

    async def aclose(self) -> None:
        """Wait for every queued removal (:meth:`wait_removed`, shielded), then stop
        the remover threads and close the SDK client (a later call makes new ones).
        Runs still in progress remove their own containers; this does not touch them."""

        def close() -> None:
            with self._client_lock:
                client, self._client = self._client, None
            if client is not None:
                client.close()

        with anyio.CancelScope(shield=True):
            await self.wait_removed()
            remover, self._remover = self._remover, None
            if remover is not None:
                # Nothing is queued any more; this only lets the idle threads go.
                await self._thread(remover.shutdown)
            await self._thread(close)


def containers_of(client: docker.DockerClient, node_ids: Collection[str]) -> list[Any]:
    """The containers (running or not) labelled as one of ``node_ids``'s. Raises the
    SDK's errors."""
    wanted = set(node_ids)
    found = client.containers.list(all=True, filters={"label": NODE_LABEL})
    return [c for c in found if c.labels.get(NODE_LABEL) in wanted]


def remove_containers_of(client: docker.DockerClient, node_ids: Collection[str]) -> int:
    """Force-remove every container (running or not) labelled as one of ``node_ids``'s;
    how many were removed. A container that cannot be removed is skipped (logged);
    this never raises."""
    removed = 0
    try:
        found = containers_of(client, node_ids)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        log.warning("could not list containers: %s", exc)
        return 0
    for container in found:
        try:
            container.remove(force=True)
            removed += 1
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            log.warning("could not remove container %s: %s", container.short_id, exc)
    return removed
