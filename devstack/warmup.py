"""Warm the node code up in the launcher, before it forks the nodes.

Python 3.11 specialises bytecode as it runs: the first calls of a function write
counters and inline caches into its code object, and the first uses of a class
give it a method-cache tag. In a forked node every such write copies the page it
lands on, so each node paid for specialising, privately, every function it ran
(a lone forked node held ~20 MiB of private pages with under 1 MiB of objects of
its own). :func:`warm_up` runs one throwaway node in the launcher (its own data
dir in a temporary directory, its API on the loopback port the launcher chose, its
libp2p ports chosen by the OS) until it is ready
and has run one noop job end to end through its own API; the nodes forked after
it inherit code that is already specialised. Nothing of it is left running: its
trio run has returned, its sockets are closed and its temporary directory removed.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import trio

WARM_UP_TIMEOUT_S = 30.0


class WarmUpFailed(RuntimeError):
    """The throwaway node did not start or run its job; the text says why."""


def warm_up(api_port: int) -> None:
    """Run a throwaway node, its API on ``api_port``, and one noop job through it; see
    the module docstring.

    Raises :class:`WarmUpFailed` if the node does not come up or the job does not
    complete within :data:`WARM_UP_TIMEOUT_S`.
    """
    # Its warnings (a slow first step, say) are about a node nobody asked for.
    logging.disable(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory(prefix="devstack-warmup-") as scratch:
            trio.run(_run, Path(scratch), api_port)
    finally:
        logging.disable(logging.NOTSET)


async def _run(data_dir: Path, api_port: int) -> None:
    from devstack.client.aio import AsyncNodeClient
    from devstack.client.calls import NodeApiError
    from node.models import JobSpec
    from node.node import Node, NodeConfig

    node = Node(NodeConfig(data_dir=data_dir, swarm_port=0, api_port=api_port))
    try:
        with trio.fail_after(WARM_UP_TIMEOUT_S):
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run)
                async with AsyncNodeClient(node.config.api_url) as client:
                    spec = JobSpec(engine="noop", command=["echo", "warm"])
                    job = (await client.submit(spec))["id"]
                    state = (await client.describe(job, wait=20))["job"]["state"]
                if state != "completed":
                    raise WarmUpFailed(f"the warm-up job ended {state}")
                nursery.cancel_scope.cancel()
    except (trio.TooSlowError, NodeApiError, KeyError, ValueError) as exc:
        raise WarmUpFailed(f"the warm-up node failed: {exc!r}") from None
