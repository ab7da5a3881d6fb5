"""devstack.warmup: the throwaway node the launcher runs before it forks the nodes."""

from __future__ import annotations

import glob
import os
import tempfile

import psutil
import pytest

from devstack.cluster import free_ports
from devstack.warmup import warm_up

pytestmark = pytest.mark.timeout(120)


def listening() -> set[int]:
    me = psutil.Process()
    return {c.laddr.port for c in me.net_connections("tcp") if c.status == psutil.CONN_LISTEN}


def test_the_warm_up_runs_a_job_and_leaves_nothing_behind() -> None:
    pattern = os.path.join(tempfile.gettempdir(), "devstack-warmup-*")
    before_dirs, before_ports = set(glob.glob(pattern)), listening()
    warm_up(free_ports(1)[0])  # raises WarmUpFailed unless its node came up and completed its job
    assert listening() == before_ports
    assert set(glob.glob(pattern)) == before_dirs
