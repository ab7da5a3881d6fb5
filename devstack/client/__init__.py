"""The one client of the node HTTP API: routes, errors and decoding shared by two faces.

- :mod:`devstack.client.calls`: each route as a :class:`Call`, the answers' decoding
  and :class:`NodeApiError`, the one error every face raises.
- :mod:`devstack.client.sync`: :class:`NodeClient`, for the CLI, benchmarks and tests
  (standard library only, so a CLI verb starts fast).
- :mod:`devstack.client.aio`: ``AsyncNodeClient``, for the TUI (httpx on asyncio).
  Import it from there: importing this package does not load httpx.
"""

from devstack.client.calls import Call, NodeApiError
from devstack.client.sync import NodeClient, download

__all__ = ["Call", "NodeApiError", "NodeClient", "download"]
