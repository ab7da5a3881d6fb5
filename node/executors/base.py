"""The Executor seam: run one shard of a job and leave its results on disk.

An executor is chosen by name from the job spec (``engine``). Executors are
async-callable from the node's trio loop; blocking work (Docker SDK calls) runs
in worker threads inside the implementation.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from node.models import JobSpec
from node.output import RunOutput

# Bounded so a chatty container cannot fill a node's disk or memory.
MAX_LOG_BYTES = 1 << 20


class ExecutorError(Exception):
    """The executor could not run the shard; the message is for the user."""


#: The phases a run reports in :attr:`RunResult.phases_ms`, in the order they happen.
PHASES = ("create", "start", "wait", "logs", "outputs", "remove")


@dataclass(frozen=True)
class RunResult:
    """What a finished shard produced. ``results_dir`` holds ``stdout``,
    ``stderr``, ``exitCode`` and ``outputs/``.

    ``phases_ms``: wall milliseconds this run spent in each phase (:data:`PHASES`,
    read-only; empty when the executor does not time itself): ``create`` (the
    results dir and the container), ``start``, ``wait`` (until the process
    exited), ``logs`` (reading stdout and stderr), ``outputs`` (writing the
    results tree) and ``remove``: what removing the container cost before
    ``run`` returned, about 0 when the executor removes it off the critical path
    (see the executor's ``run``). They are figures for people; equality and
    hashing ignore them.
    """

    exit_code: int
    results_dir: Path
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    phases_ms: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, hash=False
    )


class Executor(abc.ABC):
    name: str

    @abc.abstractmethod
    async def has_image(self, image: str) -> bool:
        """Whether this node can run jobs in ``image`` without a registry."""

    @abc.abstractmethod
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
        """Run the shard; write its results tree under ``results_dir``. ``inputs``
        (the shard's input files, see :mod:`node.sharding`) is what the job sees,
        read-only, at /inputs. ``output``, if given, gets the lines the shard prints
        while it runs, if the executor can follow them (live output).

        A non-zero exit code is a result, not an error. Raises
        :class:`ExecutorError` when the shard could not run at all (no image,
        daemon down, timeout). Cancellation stops and removes the container.
        """

    async def remove_leftovers(self, node_id: str) -> int:
        """Remove what runs of an earlier life of node ``node_id`` left behind (it was
        killed outright); how many were removed. Nothing, for an executor that leaves
        nothing behind."""
        return 0

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release clients; containers still running are stopped by ``run``."""


def write_results(
    results_dir: Path, stdout: bytes, stderr: bytes, exit_code: int
) -> tuple[bool, bool]:
    """Write the results tree's fixed files; returns which logs were truncated."""
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "outputs").mkdir(exist_ok=True)
    (results_dir / "stdout").write_bytes(stdout[:MAX_LOG_BYTES])
    (results_dir / "stderr").write_bytes(stderr[:MAX_LOG_BYTES])
    (results_dir / "exitCode").write_text(f"{exit_code}\n")
    return len(stdout) > MAX_LOG_BYTES, len(stderr) > MAX_LOG_BYTES
