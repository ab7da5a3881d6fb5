"""The Publisher seam: make an accepted result available and say where.

Chosen per job by name (``spec.publisher``, README, publishing). A compute node publishes
only results its requester accepted, and the published CID must equal the hash
that was verified: both publishers raise :class:`PublishError` rather than
publish anything else.

- ``ipfs`` (default): the result's tree goes into the node's block store as a
  UnixFS DAG (the layout kubo's ``ipfs add --cid-version=1 --raw-leaves`` gives),
  served over bitswap; the location is ``ipfs://CID``.
- ``noop``: the result stays in this node's result store; the location is its
  results URL on this node's API.
"""

from __future__ import annotations

import abc
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trio

from node.content import ContentError, import_path
from node.content.store import BlockStore
from node.results import ResultNotFound, ResultStore, unpack_results


class PublishError(Exception):
    """The result could not be published; the message says why."""


@dataclass(frozen=True)
class Published:
    result_id: str
    location: str


class Publisher(abc.ABC):
    name: str

    def __init__(self, results: ResultStore) -> None:
        self._results = results

    @abc.abstractmethod
    async def publish(self, result_id: str) -> Published:
        """Publish the stored result ``result_id``; raises :class:`PublishError` if it
        is not stored or could not be published under that very CID."""

    def _archive(self, result_id: str) -> Path:
        try:
            return self._results.path(result_id)
        except ResultNotFound:
            raise PublishError(f"result {result_id} is not stored on this node") from None


class NoopPublisher(Publisher):
    """Leaves results on this node; the location is this node's results URL."""

    name = "noop"

    def __init__(self, results: ResultStore, api_url: str) -> None:
        super().__init__(results)
        self._api_url = api_url

    async def publish(self, result_id: str) -> Published:
        self._archive(result_id)
        return Published(result_id, f"{self._api_url}/api/v1/results/{result_id}")


class IpfsPublisher(Publisher):
    """Adds the result's tree to ``blocks`` (served over bitswap)."""

    name = "ipfs"

    def __init__(self, results: ResultStore, blocks: BlockStore, scratch: Path) -> None:
        super().__init__(results)
        self._blocks = blocks
        self._scratch = scratch

    async def publish(self, result_id: str) -> Published:
        archive = self._archive(result_id)
        try:
            cid = await trio.to_thread.run_sync(self._add, archive)
        except (ContentError, OSError, tarfile.TarError) as exc:
            raise PublishError(f"could not add result {result_id}: {exc}") from None
        if cid != result_id:
            raise PublishError(
                f"the results tree added as {cid}, not the verified {result_id}: not published"
            )
        return Published(result_id, f"ipfs://{cid}")

    def _add(self, archive: Path) -> str:
        self._scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self._scratch) as scratch:
            tree = Path(scratch) / "tree"
            with archive.open("rb") as f:
                unpack_results(f, tree)
            return import_path(tree, self._blocks.put).text


#: Every publisher's name. A spec names one of :data:`node.models.PUBLISHERS`;
#: ``tests/unit/test_registries.py`` keeps the two equal.
PUBLISHERS: tuple[str, ...] = (IpfsPublisher.name, NoopPublisher.name)


def make_publishers(
    results: ResultStore, blocks: BlockStore, *, api_url: str, scratch: Path
) -> dict[str, Publisher]:
    """One publisher of each kind, by name."""
    publishers: list[Publisher] = [
        IpfsPublisher(results, blocks, scratch),
        NoopPublisher(results, api_url),
    ]
    return {p.name: p for p in publishers}
