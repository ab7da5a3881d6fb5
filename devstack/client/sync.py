"""The node API's sync face, for the ``devstack`` CLI, the benchmarks and tests.

It speaks HTTP/1.1 with the standard library's :mod:`http.client` rather than
httpx: a CLI verb has 100 ms to print its first line, and importing httpx alone
takes ~70 ms on a small machine. Each thread keeps one kept-alive connection per
client, so a client may be shared by a thread pool. Requests and errors are those
of :mod:`devstack.client.calls`, shared with the async face.
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import devstack.client.calls as calls
from devstack.client.calls import (
    CONNECT_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    KEEPALIVE_S,
    Call,
    NodeApiError,
)

if TYPE_CHECKING:
    from node.models import JobSpec

# A kept-alive connection the node closed while idle fails like this on reuse.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class _Connection:
    """One thread's connection to the node, and when it was last used."""

    def __init__(self, host: str, port: int) -> None:
        self.http = http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT_S)
        self.used_at: float | None = None  # None: never used, so never stale

    def open_for(self, timeout: float) -> None:
        if self.http.sock is None:
            self.http.connect()
            self.http.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.http.sock.settimeout(timeout)


class NodeClient:
    """Sync client of one node's API at ``base_url`` (``http://127.0.0.1:PORT``).

    Every method returns the node's JSON, or raises :class:`NodeApiError` naming
    what the node refused (its code and field) or that it could not be reached.
    ``timeout`` is the default seconds a node has to answer.
    """

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"a node API URL is http://HOST:PORT, got {base_url!r}")
        self._host, self._port = parts.hostname, parts.port or 80
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[_Connection] = []

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's connection (a later call opens a new one)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.http.close()

    # -- transport ---------------------------------------------------------------

    def _connection(self) -> _Connection:
        connection: _Connection | None = getattr(self._local, "connection", None)
        stale = connection is not None and (
            connection.used_at is not None and time.monotonic() - connection.used_at > KEEPALIVE_S
        )
        if connection is None or stale:
            if connection is not None:
                self._drop(connection)
            connection = self._local.connection = _Connection(self._host, self._port)
            with self._lock:
                self._connections.append(connection)
        return connection

    def _drop(self, connection: _Connection) -> None:
        connection.http.close()
        self._local.connection = None
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)

    def _open(
        self, call: Call, body: bytes | Iterable[bytes] | None, headers: dict[str, str]
    ) -> tuple[_Connection, http.client.HTTPResponse]:
        """Send ``call``; the response with its body unread. A GET on a kept-alive
        connection the node had closed is sent once more on a new one."""
        timeout = call.timeout or self.timeout
        for attempt in (1, 2):
            connection = self._connection()
            reused = connection.used_at is not None
            try:
                connection.open_for(timeout)
                connection.http.request(
                    call.method,
                    call.target,
                    body=body,
                    headers=headers,
                    encode_chunked=body is not None and not isinstance(body, bytes),
                )
                response = connection.http.getresponse()
            except TimeoutError:
                self._drop(connection)
                raise calls.too_slow(self.base_url, call, timeout) from None
            except _STALE as exc:
                self._drop(connection)
                if attempt == 1 and reused and call.method == "GET":
                    continue
                raise calls.unreachable(self.base_url, exc) from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop(connection)
                raise calls.unreachable(self.base_url, exc) from None
            return connection, response
        raise AssertionError("unreachable")  # the loop returns or raises

    def _finish(self, connection: _Connection, response: http.client.HTTPResponse) -> None:
        if response.will_close:
            self._drop(connection)
        else:
            connection.used_at = time.monotonic()

    def _read(
        self, call: Call, connection: _Connection, response: http.client.HTTPResponse
    ) -> bytes:
        try:
            data = response.read()
        except TimeoutError:
            self._drop(connection)
            raise calls.too_slow(self.base_url, call, call.timeout or self.timeout) from None
        except (OSError, http.client.HTTPException) as exc:
            self._drop(connection)
            raise calls.unreachable(self.base_url, exc) from None
        self._finish(connection, response)
        return data

    def _stream(self, call: Call) -> tuple[_Connection, http.client.HTTPResponse]:
        """Send ``call``; its successful response with the body unread (the caller
        drops the connection after it), or NodeApiError for a refusal."""
        connection, response = self._open(call, None, {})
        if not 200 <= response.status < 300:
            data = self._read(call, connection, response)
            calls.check(call, self.base_url + call.target, response.status, data)
        return connection, response

    def send(
        self,
        call: Call,
        *,
        body: bytes | Iterable[bytes] | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, bytes]:
        """Send ``call`` (or ``body`` in place of its JSON); the status and body,
        whatever the status (for tests of refusals)."""
        payload = call.body() if body is None else body
        headers = {"content-type": content_type} if payload is not None else {}
        connection, response = self._open(call, payload, headers)
        return response.status, self._read(call, connection, response)

    def call(self, call: Call, **kwargs: Any) -> Any:
        """Send ``call``; the answer's JSON, or NodeApiError if the node refused it."""
        status, data = self.send(call, **kwargs)
        url = self.base_url + call.target
        calls.check(call, url, status, data)
        return calls.decode_json(call, url, data)

    # -- the API -----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self.call(calls.health())

    def info(self) -> dict[str, Any]:
        return self.call(calls.info())

    def stats(self) -> dict[str, Any]:
        return self.call(calls.stats())

    def locks(self) -> dict[str, Any]:
        return self.call(calls.locks())

    def logs(self, tail: int = 200, after: int | None = None) -> dict[str, Any]:
        return self.call(calls.logs(tail, after))

    def follow_logs(self, tail: int = 200) -> Iterator[str]:
        """The node's last ``tail`` log lines, then each line as the node writes it,
        until the caller stops iterating (or the node goes away: NodeApiError)."""
        for line in self._lines(calls.logs(tail, follow=True)):
            yield line.decode("utf-8", "replace").rstrip("\n")

    def job_output(self, job_id: str, *, follow: bool = False, **narrow: Any) -> Iterator[Any]:
        """The job's output records (see :func:`calls.job_output` for ``narrow``), the
        last one ``{"state", "ended"}``; with ``follow`` each as it comes, until the
        job ends, the caller stops iterating or the node goes away (NodeApiError)."""
        call = calls.job_output(job_id, follow=follow, **narrow)
        url = self.base_url + call.target
        for line in self._lines(call):
            yield calls.decode_json(call, url, line)

    def _lines(self, call: Call) -> Iterator[bytes]:
        """The lines of ``call``'s streamed answer, as they come."""
        connection, response = self._stream(call)
        try:
            while line := response.readline():
                yield line
        except (ConnectionError, TimeoutError, http.client.HTTPException) as exc:
            raise calls.unreachable(self.base_url, exc) from None
        finally:
            self._drop(connection)  # a stream is never read to its end

    def submit(
        self, spec: JobSpec | Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """``{"id", "requester", "state"}``; a refused spec raises NodeApiError naming
        the field."""
        return self.call(calls.submit(spec, timeout))

    def list_jobs(self, *, role: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return self.call(calls.list_jobs(role, limit))["jobs"]

    def describe(self, job_id: str, *, wait: int = 0) -> dict[str, Any]:
        return self.call(calls.describe(job_id, wait))

    def find(self, job_id: str) -> dict[str, Any] | None:
        """Describe ``job_id``, or None if this node does not know it."""
        try:
            return self.describe(job_id)
        except NodeApiError as exc:
            if exc.status == 404:
                return None
            raise

    def events(self, job_id: str) -> list[dict[str, Any]]:
        return self.call(calls.events(job_id))["events"]

    def step(self, job_id: str) -> dict[str, Any]:
        return self.call(calls.step(job_id))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.call(calls.cancel(job_id))

    def profile(self, seconds: int, clock: str = "wall") -> dict[str, Any]:
        return self.call(calls.profile(seconds, clock))

    def memory(self, seconds: int) -> dict[str, Any]:
        return self.call(calls.memory(seconds))

    def add_content(self, archive: Iterable[bytes], *, timeout: float = 600.0) -> str:
        """Send a tar (streamed from ``archive``'s pieces) to be added to the node's
        store; the root CID. Raises NodeApiError (400 naming a refused entry, 413
        over the size cap)."""
        call = Call("POST", "/api/v1/content", timeout=timeout)
        return str(self.call(call, body=archive, content_type="application/x-tar")["cid"])

    def fetch_content(
        self,
        cid: str,
        dest: str | os.PathLike[str],
        *,
        providers: Sequence[str] = (),
        timeout: float = 300.0,
    ) -> None:
        """Write the tree ``cid`` to ``dest`` (which must not exist), as the node has
        it or, with ``providers`` (peer ids), once it has fetched it from them over
        bitswap within ``timeout`` seconds.

        Raises NodeApiError for the node's refusal (404 not there and no provider,
        502 providers unreachable, 504 too slow) or a transfer that broke off,
        TarError for an archive that cannot be unpacked safely, FileExistsError if
        ``dest`` exists.
        """
        from node.content.tarball import unpack

        connection, response = self._stream(calls.content(cid, tuple(providers), timeout))
        try:
            unpack(response, dest)
        except (ConnectionError, TimeoutError, http.client.HTTPException) as exc:
            raise NodeApiError(
                f"the transfer of {cid} from {self.base_url} broke off: {exc}"
            ) from None
        finally:
            self._drop(connection)  # whatever is left of the body is not read


def download(url: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> bytes:
    """GET a result archive by its full URL (``http://HOST:PORT/path``)."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    with NodeClient(base, timeout=timeout) as client:
        call = Call("GET", path)
        status, data = client.send(call)
    calls.check(call, url, status, data)
    return data
