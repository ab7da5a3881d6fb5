"""One node's HTTP API, as the TUI's screens call it (asyncio, httpx).

This module owns :class:`NodeApi`, the TUI's only way to ask a node for anything
beyond the polling of :mod:`tui.source`: a job's story, opening a step-mode gate,
submitting a job, the images a node has, a node's locks and stalls, a profile.
Every call returns the node's JSON; every failure is a :class:`NodeApiError` whose
text says what to do, with the node's own ``field`` when it refused bad input.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx

DEFAULT_TIMEOUT_S = 10.0


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """The one SSL context every node client of the TUI shares (httpx's default).

    httpx builds one per client otherwise, loading the CA bundle: ~70 ms of CPU on
    the event loop each, seconds for a 50-node devstack, though the node APIs are
    plain HTTP on 127.0.0.1 and never use it. The first call pays once; callers on
    the loop make it in a worker thread first (``asyncio.to_thread(ssl_context)``).
    """
    return httpx.create_ssl_context()


class NodeApiError(Exception):
    """A node refused a request or could not be reached.

    ``status`` is the HTTP status (None when the node did not answer); ``code`` and
    ``field`` are the node's error code and the input field it names, if any.
    """

    def __init__(
        self, message: str, *, status: int | None = None, code: str = "", field: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field


class NodeApi:
    """Calls on one node's API over ``client`` (whose ``base_url`` is the node's API
    URL). The caller owns the client: one per node, reused, closed by the caller."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    @classmethod
    def connect(cls, api: str, timeout: float = DEFAULT_TIMEOUT_S) -> NodeApi:
        """A NodeApi over a client of its own; close it with :meth:`aclose`."""
        timeouts = httpx.Timeout(timeout, connect=2.0)
        return cls(httpx.AsyncClient(base_url=api, timeout=timeouts, verify=ssl_context()))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            response = await self._client.request(method, path, **kwargs, **extra)
        except httpx.TimeoutException:
            raise NodeApiError(
                f"{self._client.base_url} did not answer {method} {path} in time;"
                " the node may be overloaded"
            ) from None
        except httpx.HTTPError as exc:
            raise NodeApiError(
                f"cannot reach {self._client.base_url} ({exc}); is the node still up?"
            ) from None
        if response.is_success:
            return response.json()
        try:
            body = response.json()
        except ValueError:
            body = {}
        raise NodeApiError(
            body.get("message") or f"{method} {path}: HTTP {response.status_code}",
            status=response.status_code,
            code=body.get("error", ""),
            field=body.get("field") or "",
        )

    async def describe_job(self, job_id: str) -> dict[str, Any]:
        """``GET /api/v1/jobs/{id}``: the job, its executions, events, shards, gates."""
        return await self._call("GET", f"/api/v1/jobs/{job_id}")

    async def step(self, job_id: str) -> dict[str, Any]:
        """Open the gates a step-mode job waits at (409 ``not_at_gate`` if none)."""
        return await self._call("POST", f"/api/v1/jobs/{job_id}/step")

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job on its requester (409 ``job_ended`` if it has ended)."""
        return await self._call("POST", f"/api/v1/jobs/{job_id}/cancel")

    async def submit(self, spec: dict[str, Any], timeout: float = 150.0) -> dict[str, Any]:
        """Submit a job spec; ``{"id", "requester", "state"}``. A refused spec raises
        :class:`NodeApiError` with the ``field`` the node names. Inputs are fetched
        before the answer, hence the long default ``timeout``."""
        return await self._call("POST", "/api/v1/jobs", json=spec, timeout=timeout)

    async def images(self) -> list[str]:
        """The Docker images the node has locally."""
        return list((await self._call("GET", "/api/v1/images"))["images"])

    async def info(self) -> dict[str, Any]:
        """``GET /api/v1/node``: id, addresses, peers and every part's statistics."""
        return await self._call("GET", "/api/v1/node")

    async def locks(self) -> dict[str, Any]:
        """``GET /api/v1/debug/locks``: the node's locks (with call sites) and stalls."""
        return await self._call("GET", "/api/v1/debug/locks")

    async def profile(self, seconds: int) -> dict[str, Any]:
        """A CPU profile of ``seconds`` (409 ``busy`` while another runs): top frames,
        text tree, HTML and speedscope documents."""
        return await self._call(
            "POST",
            "/api/v1/debug/profile",
            params={"seconds": seconds},
            timeout=seconds + 60.0,
        )
