"""A small typed client of the node HTTP API, for the devstack CLI, benchmarks and tests.

Errors are :class:`NodeApiError` carrying the node's JSON error (code, message,
field) or saying the node could not be reached and what to check.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import httpx

from node.content.tarball import ChunkReader, unpack

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)


class NodeApiError(RuntimeError):
    def __init__(
        self, message: str, *, status: int | None = None, code: str = "", field: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.field = status, code, field


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        message, code, field = body.get("message", ""), body.get("error", ""), body.get("field")
    except ValueError:
        message, code, field = response.text[:200], "", None
    where = f" (field {field})" if field else ""
    raise NodeApiError(
        f"{response.request.url}: {response.status_code} {message}{where}",
        status=response.status_code,
        code=code,
        field=field,
    )


class NodeClient:
    """Sync client of one node's API at ``base_url`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, base_url: str, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        # Idle connections expire well before the node's 30 s keep-alive, so a reused
        # one is never closed under us (a reset otherwise races the server's close).
        limits = httpx.Limits(keepalive_expiry=2.0)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, limits=limits)

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _unreachable(self, exc: Exception) -> NodeApiError:
        return NodeApiError(
            f"cannot reach the node at {self.base_url} ({exc}); is the devstack up?"
            " (`devstack status`)"
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        _raise_for(response)
        return response

    @contextlib.contextmanager
    def _stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed response with a success status (else NodeApiError as ``_request``)."""
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if not response.is_success:
                    response.read()
                    _raise_for(response)
                yield response
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/api/v1/healthz").json()

    def info(self) -> dict[str, Any]:
        return self._request("GET", "/api/v1/node").json()

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/api/v1/jobs", json=spec).json()

    def submit_raw(self, body: bytes) -> httpx.Response:
        """POST an arbitrary body; returns the response without raising (for tests)."""
        return self._http.post("/api/v1/jobs", content=body)

    def list_jobs(self, *, role: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if role:
            params["role"] = role
        return self._request("GET", "/api/v1/jobs", params=params).json()["jobs"]

    def describe(self, job_id: str, *, wait: int = 0) -> dict[str, Any]:
        """The job as this node knows it. With ``wait`` (seconds, up to 60), a job this
        node requested is described once it has ended, or after ``wait`` seconds."""
        if not wait:
            return self._request("GET", f"/api/v1/jobs/{job_id}").json()
        timeout = httpx.Timeout(wait + 10.0, connect=3.0)
        path = f"/api/v1/jobs/{job_id}"
        return self._request("GET", path, params={"wait": wait}, timeout=timeout).json()

    def find(self, job_id: str) -> dict[str, Any] | None:
        """Describe ``job_id`` or None if this node does not know it."""
        try:
            return self.describe(job_id)
        except NodeApiError as exc:
            if exc.status == 404:
                return None
            raise

    def profile(self, seconds: int, clock: str = "wall") -> dict[str, Any]:
        """A CPU profile of the node over ``seconds`` (HTML, text, speedscope, top frames),
        sampled by ``clock``: ``wall`` or ``cpu`` (the node's CPU time)."""
        return self._session("/api/v1/debug/profile", seconds, clock=clock)

    def memory(self, seconds: int) -> dict[str, Any]:
        """A memory profile of the node over ``seconds`` (traced bytes, top sites, text)."""
        return self._session("/api/v1/debug/memory", seconds)

    def _session(self, path: str, seconds: int, **params: str) -> dict[str, Any]:
        # The answer comes only after the session, and rendering it takes a while more.
        timeout = httpx.Timeout(seconds + 60.0, connect=3.0)
        params = {"seconds": str(seconds), **params}
        return self._request("POST", path, params=params, timeout=timeout).json()

    def stats(self) -> dict[str, Any]:
        """The node's metrics, lock and stall figures (``GET /api/v1/stats``)."""
        return self._request("GET", "/api/v1/stats").json()

    def step(self, job_id: str) -> dict[str, Any]:
        """Open the gate a step-mode job waits at (409 if it waits at none)."""
        return self._request("POST", f"/api/v1/jobs/{job_id}/step").json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job on its requester (409 if it has ended, or this node is not
        the job's requester: the message names the one that is)."""
        return self._request("POST", f"/api/v1/jobs/{job_id}/cancel").json()

    def events(self, job_id: str) -> list[dict[str, Any]]:
        return self._request("GET", f"/api/v1/jobs/{job_id}/events").json()["events"]

    def add_content(self, archive: Iterable[bytes], *, timeout: float = 600.0) -> str:
        """Send a tar (streamed from ``archive``'s pieces) to be added to the node's
        store; returns the root CID. Raises NodeApiError (400 naming a refused entry,
        413 over the size cap)."""
        response = self._request(
            "POST",
            "/api/v1/content",
            content=archive,
            headers={"content-type": "application/x-tar"},
            timeout=httpx.Timeout(timeout, connect=3.0),
        )
        return str(response.json()["cid"])

    def fetch_content(
        self,
        cid: str,
        dest: str | os.PathLike[str],
        *,
        providers: Sequence[str] = (),
        timeout: float = 300.0,
    ) -> None:
        """Write the tree ``cid`` to ``dest`` (which must not exist), as the node has it
        or, with ``providers`` (peer ids), once it has fetched it from them over
        bitswap within ``timeout`` seconds.

        Raises NodeApiError for the node's refusal (404 not there and no provider, 502
        providers unreachable, 504 too slow) or a transfer that broke off, TarError
        for an archive that cannot be unpacked safely, FileExistsError if ``dest`` exists.
        """
        params: dict[str, Any] = {"timeout": max(1, round(timeout))}
        if providers:
            params["from"] = ",".join(providers)
        # The answer starts only once the node has every block.
        wait = httpx.Timeout(timeout + 30.0, connect=3.0)
        with self._stream("GET", f"/api/v1/content/{cid}", params=params, timeout=wait) as response:
            try:
                unpack(io.BufferedReader(ChunkReader(response.iter_bytes())), dest)
            except httpx.HTTPError as exc:
                raise NodeApiError(
                    f"the transfer of {cid} from {self.base_url} broke off: {exc}"
                ) from None


def download(url: str, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> bytes:
    """GET a result archive by its full URL."""
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.TransportError as exc:
        raise NodeApiError(f"cannot download {url} ({exc}); is its node still up?") from None
    _raise_for(response)
    return response.content
