"""Containers run by Docker alone: the yardstick the cluster (``overhead``), the node's
executor (``executor``) and the rate the cluster sustains (``load --engine docker``)
are measured against. The tiny container is ``IMAGE echo hello``.

Each run carries a ``py-bacalhau.bench=<uuid>`` label (:data:`NATIVE_LABEL`), so the
containers an interrupted run leaves can be found and removed (:func:`remove_labelled`).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from typing import Any

from devstack.bench.harness import BenchError, ms_since

COMMAND = ["echo", "hello"]
EXPECTED_STDOUT = "hello\n"
#: How long one run of the tiny container may take, natively or as a cluster job.
JOB_TIMEOUT_S = 120.0
#: Label of the containers the native runs start, so strays can be found and removed.
NATIVE_LABEL = "py-bacalhau.bench"


def run_docker_cli(image: str, label: str) -> float:
    """``docker run --rm IMAGE echo hello`` as a subprocess; its wall time in ms."""
    argv = ["docker", "run", "--rm", "--label", label, image, *COMMAND]
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"`{' '.join(argv)}` failed: {exc}") from None
    elapsed = ms_since(start)
    if done.returncode != 0 or done.stdout != EXPECTED_STDOUT:
        raise BenchError(
            f"`{' '.join(argv)}` exited {done.returncode}: {(done.stderr or done.stdout)[:300]}"
        )
    return elapsed


def run_docker_sdk(client: Any, image: str, label: str) -> float:
    """``containers.run(IMAGE, ["echo", "hello"], remove=True)``; its wall time in ms."""
    import docker.errors

    key, _, value = label.partition("=")
    start = time.perf_counter()
    try:
        out = client.containers.run(image, COMMAND, remove=True, labels={key: value})
    except docker.errors.DockerException as exc:
        raise BenchError(f"the Docker SDK run of {image} failed: {exc}") from None
    elapsed = ms_since(start)
    if out.decode("utf-8", "replace") != EXPECTED_STDOUT:
        raise BenchError(f"the Docker SDK run printed {out[:200]!r}, not {EXPECTED_STDOUT!r}")
    return elapsed


def remove_labelled(client: Any, label: str) -> int:
    """Force-remove every container carrying ``label`` (what an interrupted run left)."""
    removed = 0
    with contextlib.suppress(Exception):
        for container in client.containers.list(all=True, filters={"label": label}):
            with contextlib.suppress(Exception):
                container.remove(force=True)
                removed += 1
    return removed
