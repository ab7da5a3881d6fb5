"""A job's inputs: fetched at submit by its requester (which counts the shards), and
the plan of which entries each shard gets, made alike by the requester and every
compute node.

The requester keeps a full copy of every input tree, so the compute nodes that
run the job fetch from it (README, executors: inputs mount read-only at /inputs), and it
lists the trees to split the matched entries into shards. The compute nodes make
the same plan from the same trees (:func:`node.sharding.plan_shards` is a pure
function of them), so the announce carries only the count.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from node.content import Cid, ContentError, parse_cid
from node.content.store import BlockNotFound
from node.models import MAX_SHARDS, JobSpec, SpecError
from node.p2p.exchange import Exchange, FetchError
from node.sharding import InputError, list_entries, plan_shards

INPUT_FETCH_TIMEOUT_S = 120.0


async def count_shards(
    spec: JobSpec,
    exchange: Exchange,
    providers_of: Callable[[str], Awaitable[list[str]]],
    *,
    timeout: float = INPUT_FETCH_TIMEOUT_S,
) -> int:
    """Fetch every input of ``spec`` into ``exchange``'s store (from the nodes that
    ``providers_of(cid)`` names, when it is not already here) and return how many
    shards the job has: 1 without sharding.

    Raises :class:`SpecError` naming the input that cannot be had, or the sharding
    rule that matches nothing or makes more than :data:`MAX_SHARDS` shards.
    """
    mounts = mounts_of(spec)
    for i, (source, (_, cid)) in enumerate(zip(spec.inputs, mounts, strict=True)):
        providers = await providers_of(source.cid)
        try:
            await exchange.fetch(cid, providers, timeout=timeout)
        except (FetchError, BlockNotFound) as exc:
            where = (
                f"from {', '.join(providers)}"
                if providers
                else "here, and no job of this node published it (add it with `devstack add`)"
            )
            raise SpecError(
                f"inputs[{i}].cid", f"cannot fetch {source.cid} {where}: {exc}"
            ) from None
    try:
        plan = await shard_plan(spec, exchange, mounts)
    except (InputError, ContentError) as exc:
        raise SpecError("sharding.glob_pattern", str(exc)) from None
    if plan is None:
        return 1
    if len(plan) > MAX_SHARDS:
        raise SpecError(
            "sharding.batch_size",
            f"{len(plan)} shards; at most {MAX_SHARDS}: raise the batch size",
        )
    return len(plan)


def mounts_of(spec: JobSpec) -> list[tuple[str, Cid]]:
    """The spec's inputs as (mount path, root CID) pairs, in order.

    Raises :class:`SpecError` naming the input whose CID does not parse:
    :func:`~node.models.validate_spec` checks only their syntax.
    """
    mounts: list[tuple[str, Cid]] = []
    for i, source in enumerate(spec.inputs):
        try:
            mounts.append((source.path, parse_cid(source.cid)))
        except ContentError as exc:
            raise SpecError(f"inputs[{i}].cid", str(exc)) from None
    return mounts


async def shard_plan(
    spec: JobSpec, exchange: Exchange, mounts: list[tuple[str, Cid]]
) -> list[tuple[str, ...]] | None:
    """Each shard's input entries (:func:`node.sharding.plan_shards`) from the trees in
    ``exchange``'s store; None for a job without sharding. Raises InputError or
    ContentError (a tree that cannot be read, a glob that matches nothing)."""
    if spec.sharding is None:
        return None
    entries = await exchange.in_thread(list_entries, mounts, exchange.store.get)
    return plan_shards(entries, spec.sharding.glob_pattern, spec.sharding.batch_size)
