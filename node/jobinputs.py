"""What a requester does with a job's inputs at submit: fetch them, count the shards.

The requester keeps a full copy of every input tree, so the compute nodes that
run the job fetch from it (DESIGN §7: inputs mount read-only at /inputs), and it
lists the trees to split the matched entries into shards. The compute nodes make
the same plan from the same trees (:func:`node.sharding.plan_shards` is a pure
function of them), so the announce carries only the count.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from node.content import ContentError, parse_cid
from node.content.exchange import Exchange, FetchError
from node.content.store import BlockNotFound
from node.models import MAX_SHARDS, JobSpec, SpecError
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
    mounts = []
    for i, source in enumerate(spec.inputs):
        cid = parse_cid(source.cid)
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
        mounts.append((source.path, cid))
    if spec.sharding is None:
        return 1
    try:
        entries = await exchange.in_thread(list_entries, mounts, exchange.store.get)
        plan = plan_shards(entries, spec.sharding.glob_pattern, spec.sharding.batch_size)
    except (InputError, ContentError) as exc:
        raise SpecError("sharding.glob_pattern", str(exc)) from None
    if len(plan) > MAX_SHARDS:
        raise SpecError(
            "sharding.batch_size",
            f"{len(plan)} shards; at most {MAX_SHARDS}: raise the batch size",
        )
    return len(plan)
