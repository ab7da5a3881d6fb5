"""The node API's async face, for the TUI (asyncio, over :class:`httpx.AsyncClient`).

Requests, answers and errors are those of :mod:`devstack.client.calls`, shared with
the sync face; only the transport differs. One client per node: httpcore's pool
scans all its connections for every request, which over 50 nodes in one pool cost
more CPU than the rest of the TUI.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import msgspec

import devstack.client.calls as calls
from devstack.client.calls import DEFAULT_TIMEOUT_S, Call, NodeApiError

if TYPE_CHECKING:
    from node.models import JobSpec

T = TypeVar("T")
# Below the node's 30 s keep-alive: a reused connection is not closed under us.
_KEEPALIVE_S = 10.0


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """The one SSL context every async client shares (httpx's default).

    httpx builds one per client otherwise, loading the CA bundle: ~70 ms of CPU on
    the event loop each, seconds for a 50-node devstack, though the node APIs are
    plain HTTP and never use it. The first call pays once; callers on an event loop
    make it in a worker thread first (``asyncio.to_thread(ssl_context)``).
    """
    return httpx.create_ssl_context()


class AsyncNodeClient:
    """Async client of one node's API at ``base_url``; ``async with`` or :meth:`aclose`.

    Every method returns the node's JSON (or, with :meth:`fetch`, a typed document),
    or raises :class:`NodeApiError`. ``timeout`` is the default seconds a node has
    to answer, ``connect_timeout`` to accept a connection; ``transport`` replaces
    the network (tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        connect_timeout: float = 2.0,
        max_connections: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            verify=ssl_context(),
            timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)),
            limits=httpx.Limits(max_connections=max_connections, keepalive_expiry=_KEEPALIVE_S),
            transport=transport,
        )

    async def __aenter__(self) -> AsyncNodeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, call: Call) -> tuple[int, bytes]:
        """Send ``call``; the status and body, whatever the status. A GET on a
        kept-alive connection that broke is sent once more."""
        timeout = call.timeout or self.timeout
        extra: dict[str, Any] = {} if call.timeout is None else {"timeout": call.timeout}
        for attempt in (1, 2):
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, json=call.json, **extra
                )
                return response.status_code, response.content
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if attempt == 1 and call.method == "GET":
                    continue
                raise calls.unreachable(self.base_url, f"the connection broke: {exc}") from None
            except httpx.TimeoutException:
                raise calls.too_slow(self.base_url, call, timeout) from None
            except httpx.HTTPError as exc:
                raise calls.unreachable(self.base_url, str(exc) or type(exc).__name__) from None
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _answer(self, call: Call) -> tuple[str, bytes]:
        status, data = await self.send(call)
        url = self.base_url + call.target
        calls.check(call, url, status, data)
        return url, data

    async def call(self, call: Call) -> Any:
        """Send ``call``; the answer's JSON, or NodeApiError if the node refused it."""
        url, data = await self._answer(call)
        return calls.decode_json(call, url, data)

    async def lines(self, call: Call) -> AsyncIterator[bytes]:
        """The lines of ``call``'s streamed answer as they come, until it ends or the
        caller stops; NodeApiError for a refusal or a node that went away."""
        timeout = httpx.Timeout(self.timeout, read=call.timeout)
        try:
            async with self._http.stream(
                call.method, call.path, params=call.params, timeout=timeout
            ) as response:
                if response.status_code >= 300:
                    data = await response.aread()
                    calls.check(call, self.base_url + call.target, response.status_code, data)
                async for line in response.aiter_lines():
                    yield line.encode()
        except httpx.TimeoutException:
            raise calls.too_slow(self.base_url, call, call.timeout or self.timeout) from None
        except httpx.HTTPError as exc:
            raise calls.unreachable(self.base_url, str(exc) or type(exc).__name__) from None

    async def job_output(
        self, job_id: str, *, follow: bool = False, **narrow: Any
    ) -> AsyncIterator[Any]:
        """The job's output records, as :meth:`NodeClient.job_output` gives them."""
        call = calls.job_output(job_id, follow=follow, **narrow)
        url = self.base_url + call.target
        async for line in self.lines(call):
            if line:
                yield calls.decode_json(call, url, line)

    async def fetch(self, call: Call, decoder: msgspec.json.Decoder[T]) -> T:
        """Send ``call``; the answer decoded straight into ``decoder``'s type (which
        skips every field it does not name without building it)."""
        url, data = await self._answer(call)
        try:
            return decoder.decode(data)
        except msgspec.DecodeError as exc:  # ValidationError included
            raise NodeApiError(
                f"{call.path}: unexpected answer ({exc})",
                detail=f"{url}: unexpected answer ({exc})",
            ) from None

    # -- the API -----------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        return await self.call(calls.health())

    async def info(self) -> dict[str, Any]:
        return await self.call(calls.info())

    async def stats(self) -> dict[str, Any]:
        return await self.call(calls.stats())

    async def images(self) -> list[str]:
        return list((await self.call(calls.images()))["images"])

    async def locks(self) -> dict[str, Any]:
        return await self.call(calls.locks())

    async def logs(self, tail: int = 200, after: int | None = None) -> dict[str, Any]:
        return await self.call(calls.logs(tail, after))

    async def submit(
        self, spec: JobSpec | Mapping[str, Any], timeout: float = 150.0
    ) -> dict[str, Any]:
        """``{"id", "requester", "state"}``; a refused spec raises NodeApiError with
        the ``field`` the node names. Inputs are fetched before the answer, hence
        the long default ``timeout``."""
        return await self.call(calls.submit(spec, timeout))

    async def list_jobs(self, *, role: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return (await self.call(calls.list_jobs(role, limit)))["jobs"]

    async def describe(self, job_id: str, *, wait: int = 0) -> dict[str, Any]:
        """The job as this node knows it; with ``wait`` (seconds, up to 60), once a
        job this node requested has ended, or after ``wait`` seconds."""
        return await self.call(calls.describe(job_id, wait))

    async def step(self, job_id: str) -> dict[str, Any]:
        return await self.call(calls.step(job_id))

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return await self.call(calls.cancel(job_id))

    async def profile(self, seconds: int, clock: str = "wall") -> dict[str, Any]:
        return await self.call(calls.profile(seconds, clock))
