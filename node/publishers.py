"""The Publisher seam: make an accepted result available and say where.

Chosen per job by name (``spec.publisher``). Only ``noop`` exists so far
(results stay on the compute node, downloadable from its API); the ``ipfs``
publisher of DESIGN §9 slots in here.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    result_id: str
    location: str


class Publisher(abc.ABC):
    name: str

    @abc.abstractmethod
    async def publish(self, result_id: str) -> Published:
        """Publish the stored result ``result_id``; raises if it is not stored."""


class NoopPublisher(Publisher):
    """Leaves results on this node; the location is this node's results URL."""

    name = "noop"

    def __init__(self, api_url: str) -> None:
        self._api_url = api_url

    async def publish(self, result_id: str) -> Published:
        return Published(result_id, f"{self._api_url}/api/v1/results/{result_id}")
