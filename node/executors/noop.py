"""The ``noop`` executor: a fixed result at once, for control-plane tests and benchmarks."""

from __future__ import annotations

import time
from pathlib import Path
from types import MappingProxyType

from node.executors.base import PHASES, Executor, RunResult, write_results
from node.models import JobSpec
from node.output import RunOutput


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
        output: RunOutput | None = None,
    ) -> RunResult:
        """Write the fixed results tree; ``phases_ms`` is 0 but for ``outputs``. Nothing
        runs, so there is no live ``output``."""
        stdout = (" ".join(spec.command) + "\n").encode() if spec.command else b""
        phases = dict.fromkeys(PHASES, 0.0)
        started = time.perf_counter()
        write_results(results_dir, stdout, b"", 0)
        phases["outputs"] = (time.perf_counter() - started) * 1000.0
        return RunResult(exit_code=0, results_dir=results_dir, phases_ms=MappingProxyType(phases))
