"""The ``docker`` executor: one shard of a job runs as one local Docker container.

This module owns the container's whole life: create (from a local image only; no
registry is assumed), start, wait with the job's timeout, collect bounded stdout
and stderr, write the results tree, and force-remove the container on every
path out of :meth:`DockerExecutor.run` (success, non-zero exit, timeout, error
and trio/anyio cancellation). It also owns the Docker SDK client, created lazily
in a worker thread on first use (the node is forked from a launcher, so no
client may exist at import time) and closed by :meth:`DockerExecutor.aclose`.

Every blocking SDK call runs in a worker thread via ``anyio.to_thread.run_sync``
under the executor's thread limiter, so the node's trio loop never blocks.
Containers carry the caller's labels plus ``py-bacalhau=1`` so strays can be found.
:meth:`DockerExecutor.container_pids` tells the node's resource sampler the host PIDs
of the containers running now.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import docker
import docker.errors
import requests.exceptions
import urllib3.exceptions
from docker.models.containers import Container
from docker.types import Mount
from docker.utils import parse_repository_tag

from node.executors.base import MAX_LOG_BYTES, Executor, ExecutorError, RunResult, write_results
from node.models import JobSpec
from node.sharding import INPUTS_ROOT
from profiles.locks import ThreadLock

log = logging.getLogger(__name__)

#: Label every container started here carries (in addition to the caller's).
OWNER_LABEL = ("py-bacalhau", "1")
#: How long a positive :meth:`DockerExecutor.has_image` answer is trusted.
IMAGE_CACHE_TTL_S = 5.0
#: Longest single blocking wait on a container; bounds how long a worker thread
#: outlives a cancelled run.
WAIT_POLL_S = 1.0
#: Smallest CPU limit Docker accepts (0.01 core); smaller requests are raised to it.
MIN_NANO_CPUS = 10_000_000
_REMOVE_ATTEMPTS = 3
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")
_T = TypeVar("_T")


@dataclass(frozen=True)
class DockerExecutorStatistics:
    """Counters since the executor was made.

    ``running``: runs in progress. ``started``: containers started.
    ``finished``: runs that produced a result (any exit code). ``failed``: runs
    that raised :class:`ExecutorError` other than a timeout. ``timed_out``: runs
    killed at the job's timeout.
    """

    running: int
    started: int
    finished: int
    failed: int
    timed_out: int


class _Timeout(Exception):
    """Internal: the container outlived the job's timeout."""


class _Handle:
    """What one run knows of its container; written from worker threads."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.create_attempted = False
        self.client: docker.DockerClient | None = None
        self.container: Container | None = None


def normalise_image(image: str) -> str:
    """``image`` as Docker resolves it: a bare name gets ``:latest``."""
    repository, tag = parse_repository_tag(image)
    return f"{repository}:latest" if not tag else image


def _daemon_error(exc: BaseException) -> ExecutorError:
    return ExecutorError(f"the Docker daemon is unreachable: {exc}")


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
    (anyio's default limiter when None).
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

    def statistics(self) -> DockerExecutorStatistics:
        """A snapshot of this executor's counters."""
        return DockerExecutorStatistics(
            running=self._running,
            started=self._started,
            finished=self._finished,
            failed=self._failed,
            timed_out=self._timed_out,
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

        Positive answers are cached for a few seconds; negative ones are not.
        Never raises: a daemon error counts as "no".
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
    ) -> None:
        client = handle.client = self._get_client()
        resources = spec.resources
        mounts = [Mount(target="/outputs", source=str(outputs), type="bind", read_only=False)]
        if inputs is not None:
            mounts.append(
                Mount(
                    target=INPUTS_ROOT, source=str(inputs.absolute()), type="bind", read_only=True
                )
            )
        kwargs: dict[str, Any] = {
            "name": handle.name,
            "command": list(spec.command) or None,
            "environment": dict(spec.env),
            "labels": {**labels, OWNER_LABEL[0]: OWNER_LABEL[1]},
            "mounts": mounts,
            "stdin_open": False,
            "tty": False,
        }
        if spec.entrypoint is not None:
            kwargs["entrypoint"] = list(spec.entrypoint)
        if not spec.network:
            kwargs["network_mode"] = "none"
        if resources.cpu > 0:
            # Docker's CFS quota floor is 0.01 CPU; below it the start fails.
            kwargs["nano_cpus"] = max(MIN_NANO_CPUS, int(resources.cpu * 1e9))
        if resources.memory > 0:
            kwargs["mem_limit"] = resources.memory
        handle.create_attempted = True
        try:
            handle.container = client.containers.create(spec.image, **kwargs)
        except docker.errors.ImageNotFound as exc:
            raise ExecutorError(
                f"image {spec.image!r} is not present on this node "
                "(no registry is reachable; build or import it locally)"
            ) from exc
        except docker.errors.APIError as exc:
            raise ExecutorError(
                f"docker could not create the container: {exc.explanation or exc}"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise _daemon_error(exc) from exc
        try:
            handle.container.start()
        except docker.errors.APIError as exc:
            raise ExecutorError(
                f"docker could not start the container: {exc.explanation or exc}"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise _daemon_error(exc) from exc

    @staticmethod
    def _wait_sync(container: Container, timeout: float) -> int | None:
        """The exit code, or None if the container still runs after ``timeout``."""
        try:
            status = container.wait(timeout=timeout)
        except requests.exceptions.RequestException as exc:
            if _is_read_timeout(exc):
                return None
            raise _daemon_error(exc) from exc
        except docker.errors.APIError as exc:
            raise ExecutorError(
                f"docker could not wait for the container: {exc.explanation or exc}"
            ) from exc
        return int(status.get("StatusCode", -1))

    @staticmethod
    def _read_log_sync(container: Container, *, stdout: bool) -> bytes:
        """At most ``MAX_LOG_BYTES + 1`` bytes of one stream (so truncation shows)."""
        chunks: list[bytes] = []
        size = 0
        try:
            stream: Iterator[bytes] = container.logs(
                stdout=stdout, stderr=not stdout, stream=True, follow=False
            )
            try:
                for chunk in stream:
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_LOG_BYTES:
                        break
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
        except docker.errors.APIError as exc:
            raise ExecutorError(
                f"docker could not read the container's logs: {exc.explanation or exc}"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise _daemon_error(exc) from exc
        return b"".join(chunks)[: MAX_LOG_BYTES + 1]

    def _collect_sync(
        self, container: Container, results_dir: Path, exit_code: int
    ) -> tuple[bool, bool]:
        stdout = self._read_log_sync(container, stdout=True)
        stderr = self._read_log_sync(container, stdout=False)
        return write_results(results_dir, stdout, stderr, exit_code)

    @staticmethod
    def _kill_sync(container: Container) -> None:
        # Already gone or exiting is fine: the forced remove settles it.
        with contextlib.suppress(
            docker.errors.DockerException, requests.exceptions.RequestException
        ):
            container.kill()

    def _remove_sync(self, handle: _Handle) -> None:
        """Force-remove the run's container (by id, else by name); never raises."""
        if not handle.create_attempted:
            return
        ref = handle.container.id if handle.container is not None else handle.name
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

    async def run(
        self,
        job_id: str,
        shard: int,
        spec: JobSpec,
        results_dir: Path,
        *,
        labels: dict[str, str],
        inputs: Path | None = None,
    ) -> RunResult:
        """Run the shard in a container; write ``stdout``, ``stderr``, ``exitCode``
        and ``outputs/`` under ``results_dir``. ``inputs`` is mounted read-only at
        /inputs.

        Guarantees: the container is force-removed before this returns, raises or
        is cancelled; stdout and stderr are kept up to ``MAX_LOG_BYTES`` each and
        never read into memory beyond that. A non-zero exit code is a result.

        Raises :class:`ExecutorError` when the image is not local, the daemon is
        unreachable, Docker refuses the container (e.g. a bad resource limit or
        an entrypoint missing from the image), the shard outlives
        ``spec.timeout`` (it is killed first), or the results cannot be written.
        """
        results_dir = Path(results_dir).absolute()
        outputs = results_dir / "outputs"
        slug = _NAME_UNSAFE.sub("-", job_id)[:40] or "job"
        handle = _Handle(f"pyb-{slug}-{shard}-{secrets.token_hex(4)}")
        self._running += 1
        try:
            await self._thread(lambda: outputs.mkdir(parents=True, exist_ok=True))
            await self._thread(self._create_and_start, handle, spec, outputs, inputs, labels)
            container = handle.container
            assert container is not None
            self._started += 1
            self._live.add(container.id)
            deadline = anyio.current_time() + spec.timeout
            while True:
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    await self._thread(self._kill_sync, container)
                    raise _Timeout
                exit_code = await self._thread(
                    self._wait_sync, container, min(WAIT_POLL_S, remaining), abandon=True
                )
                if exit_code is not None:
                    break
            stdout_cut, stderr_cut = await self._thread(
                self._collect_sync, container, results_dir, exit_code
            )
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
            if handle.container is not None:
                self._live.discard(handle.container.id)
            with anyio.CancelScope(shield=True):
                await self._thread(self._remove_sync, handle)
            self._running -= 1
        self._finished += 1
        return RunResult(
            exit_code=exit_code,
            results_dir=results_dir,
            stdout_truncated=stdout_cut,
            stderr_truncated=stderr_cut,
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

    async def aclose(self) -> None:
        """Close the SDK client (a later call makes a new one). Runs' own
        ``finally`` blocks remove their containers; this does not touch them."""

        def close() -> None:
            with self._client_lock:
                client, self._client = self._client, None
            if client is not None:
                client.close()

        with anyio.CancelScope(shield=True):
            await self._thread(close)
