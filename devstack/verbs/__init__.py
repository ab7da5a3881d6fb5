"""The ``devstack`` verbs, a module per area; :mod:`devstack.cli` imports the one a
command names, and only that one, when it runs.

Each verb is a function ``verb(args) -> exit status`` beside ``verb_arguments(parser)``,
which adds its options. What several verbs share lives here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devstack import state as st
from devstack.errors import ClusterError
from devstack.state import ClusterState


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


@contextlib.contextmanager
def local_files_reported() -> Iterator[None]:
    """A local path or archive that cannot be used (``OSError``, ``ContentError``) as
    a ClusterError: one line naming it and exit status 1, as any verb's failure."""
    from node.content import ContentError  # here: only the verbs that touch files

    try:
        yield
    except (OSError, ContentError) as exc:
        raise ClusterError(str(exc)) from None


def running_cluster(state_dir: Path) -> ClusterState:
    """The devstack in ``state_dir``, or a ClusterError saying how to start one."""
    cluster = st.load(state_dir)
    if cluster is None:
        raise ClusterError(
            f"no devstack is running (no {st.state_path(state_dir)}); start one with `devstack up`"
        )
    return cluster
