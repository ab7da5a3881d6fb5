"""The ``noop`` executor: a fixed result at once, for control-plane tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

from node.executors.base import Executor, RunResult, write_results
from node.models import JobSpec


class NoopExecutor(Executor):
    """Runs nothing; every shard 'prints' its command joined by spaces and exits 0."""

    name = "noop"

    async def has_image(self, image: str) -> bool:
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
    ) -> RunResult:
        stdout = (" ".join(spec.command) + "\n").encode() if spec.command else b""
        write_results(results_dir, stdout, b"", 0)
        return RunResult(exit_code=0, results_dir=results_dir)
