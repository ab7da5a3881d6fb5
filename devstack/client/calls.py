"""The node API's routes as data, and what both client faces share about them.

A :class:`Call` says what one request is (method, path, query, JSON body, how long
the node may take); the functions below build one per route, so the sync face
(:mod:`devstack.client.sync`) and the async face (:mod:`devstack.client.aio`) send
the same requests and read answers and errors the same way (:func:`error_for`).
The routes themselves are listed in the README's Architecture section.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from devstack.errors import DevstackError

if TYPE_CHECKING:
    from node.models import JobSpec

#: Seconds a node has to answer a call that does not say otherwise.
DEFAULT_TIMEOUT_S = 10.0
#: Seconds to open a connection to a node (it is local: a slow connect means it is gone).
CONNECT_TIMEOUT_S = 3.0
#: Idle kept-alive connections are dropped well before the node's own 30 s
#: keep-alive, so a reused one is never closed under a request.
KEEPALIVE_S = 2.0


class NodeApiError(DevstackError):
    """A node refused a request, or could not be reached.

    ``status`` is the HTTP status (None when the node did not answer); ``code`` and
    ``field`` are the node's error code and the input field it names ("" if none);
    ``message`` is the short text (the node's own words when it answered), while
    ``str()`` of the error also names the URL.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        field: str = "",
        detail: str | None = None,
    ) -> None:
        super().__init__(detail or message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field


@dataclass(frozen=True, slots=True)
class Call:
    """One request to a node's API. ``timeout`` None means the client's default."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    timeout: float | None = None

    @property
    def target(self) -> str:
        """The path with its query string, as sent on the wire."""
        return f"{self.path}?{urlencode(self.params)}" if self.params else self.path

    def body(self) -> bytes | None:
        return None if self.json is None else json.dumps(self.json).encode()


def _segment(text: str) -> str:
    """A path segment: a job id or CID with a '/' cannot reach another route."""
    return quote(text, safe="")


def health() -> Call:
    return Call("GET", "/api/v1/healthz")


def info() -> Call:
    """``GET /api/v1/node``: id, addresses, peers and every part's statistics."""
    return Call("GET", "/api/v1/node")


def stats() -> Call:
    """``GET /api/v1/stats``: metrics, lock and stall figures."""
    return Call("GET", "/api/v1/stats")


def images() -> Call:
    """``GET /api/v1/images``: the Docker images the node has."""
    return Call("GET", "/api/v1/images")


def locks() -> Call:
    """``GET /api/v1/debug/locks``: the node's locks (with call sites) and stalls."""
    return Call("GET", "/api/v1/debug/locks")


#: Seconds a followed log may stay quiet before the client gives up on the node.
FOLLOW_IDLE_S = 24 * 3600.0


def logs(tail: int, after: int | None = None, *, follow: bool = False) -> Call:
    """``GET /api/v1/logs``: the last ``tail`` lines of the node's own log, or those
    written after byte ``after``; with ``follow``, a stream of them and then of each
    line as it is written."""
    params = {"tail": str(tail)}
    if after is not None:
        params["after"] = str(after)
    if follow:
        params["follow"] = "true"
        return Call("GET", "/api/v1/logs", params, timeout=FOLLOW_IDLE_S)
    return Call("GET", "/api/v1/logs", params)


def job_output(
    job_id: str,
    *,
    follow: bool = False,
    shard: int | None = None,
    node: str | None = None,
    stream: str | None = None,
) -> Call:
    """``GET /api/v1/jobs/{id}/logs``: the job's live output as NDJSON records (what
    its requester holds; with ``follow``, then each line as it comes, until the job
    ends), narrowed to one ``shard``, ``node`` (peer id) or ``stream``."""
    params: dict[str, str] = {}
    for name, value in (("shard", shard), ("node", node), ("stream", stream)):
        if value is not None:
            params[name] = str(value)
    path = f"/api/v1/jobs/{_segment(job_id)}/logs"
    if follow:
        params["follow"] = "true"
        return Call("GET", path, params, timeout=FOLLOW_IDLE_S)
    return Call("GET", path, params)


def submit(spec: JobSpec | Mapping[str, Any], timeout: float | None = None) -> Call:
    """``POST /api/v1/jobs`` of a :class:`~node.models.JobSpec` (encoded by msgspec),
    or of a raw document (a test of what the node refuses). The node fetches a job's
    inputs before it answers, so a caller submitting inputs gives a longer ``timeout``."""
    if not isinstance(spec, Mapping):
        import msgspec  # here: the verbs that submit nothing do not load it

        spec = msgspec.to_builtins(spec)
    return Call("POST", "/api/v1/jobs", json=spec, timeout=timeout)


def list_jobs(role: str | None = None, limit: int = 100) -> Call:
    params = {"limit": str(limit)}
    if role:
        params["role"] = role
    return Call("GET", "/api/v1/jobs", params)


def describe(job_id: str, wait: int = 0) -> Call:
    """The job, its executions, events, shards and gates. With ``wait`` (seconds,
    up to 60) a job this node requested is described once it has ended."""
    path = f"/api/v1/jobs/{_segment(job_id)}"
    if not wait:
        return Call("GET", path)
    return Call("GET", path, {"wait": str(wait)}, timeout=wait + DEFAULT_TIMEOUT_S)


def events(job_id: str) -> Call:
    return Call("GET", f"/api/v1/jobs/{_segment(job_id)}/events")


def step(job_id: str) -> Call:
    """Open the gates a step-mode job waits at (409 ``not_at_gate`` if none)."""
    return Call("POST", f"/api/v1/jobs/{_segment(job_id)}/step")


def cancel(job_id: str) -> Call:
    """Cancel a job on its requester (409 if it has ended, or if this node is not
    its requester: the message names the one that is)."""
    return Call("POST", f"/api/v1/jobs/{_segment(job_id)}/cancel")


def profile(seconds: int, clock: str = "wall") -> Call:
    """A CPU profile over ``seconds`` sampled by ``clock`` (``wall`` or ``cpu``);
    409 ``busy`` while another runs. The answer comes after the session, and
    rendering it takes a while more."""
    params = {"seconds": str(seconds), "clock": clock}
    return Call("POST", "/api/v1/debug/profile", params, timeout=seconds + 60.0)


def memory(seconds: int) -> Call:
    """A memory profile over ``seconds`` (traced bytes, top sites, text)."""
    params = {"seconds": str(seconds)}
    return Call("POST", "/api/v1/debug/memory", params, timeout=seconds + 60.0)


def content(cid: str, providers: tuple[str, ...] = (), timeout: float = 300.0) -> Call:
    """``GET /api/v1/content/{cid}``: the tree as a tar, once the node has every
    block (fetched from ``providers`` over bitswap within ``timeout``)."""
    params = {"timeout": str(max(1, round(timeout)))}
    if providers:
        params["from"] = ",".join(providers)
    return Call("GET", f"/api/v1/content/{_segment(cid)}", params, timeout=timeout + 30.0)


# -- answers ---------------------------------------------------------------------


def error_for(call: Call, url: str, status: int, body: bytes) -> NodeApiError:
    """The error for a refused ``call``: the node's JSON error (``error``,
    ``message``, ``field``) when it sent one, else the start of its body."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict):
        message = str(document.get("message") or "")
        code, field_name = str(document.get("error") or ""), str(document.get("field") or "")
    else:
        message, code, field_name = body[:200].decode(errors="replace"), "", ""
    message = message or f"{call.method} {call.path}: HTTP {status}"
    where = f" (field {field_name})" if field_name else ""
    return NodeApiError(
        message,
        status=status,
        code=code,
        field=field_name,
        detail=f"{url}: {status} {message}{where}",
    )


def check(call: Call, url: str, status: int, body: bytes) -> None:
    """Raise :func:`error_for` the answer unless its status is a success."""
    if not 200 <= status < 300:
        raise error_for(call, url, status, body)


def unreachable(base_url: str, reason: object) -> NodeApiError:
    return NodeApiError(
        f"cannot reach the node at {base_url} ({reason}); is it still up? (`devstack status`)"
    )


def too_slow(base_url: str, call: Call, timeout: float) -> NodeApiError:
    return NodeApiError(
        f"{base_url} did not answer {call.method} {call.path} within {timeout:g}s;"
        " the node may be overloaded"
    )


def decode_json(call: Call, url: str, body: bytes) -> Any:
    """A successful answer's JSON (a NodeApiError if it is not JSON)."""
    try:
        return json.loads(body)
    except ValueError:
        raise NodeApiError(
            f"{call.method} {call.path}: the node's answer is not JSON: {body[:80]!r}",
            detail=f"{url}: the answer is not JSON: {body[:80]!r}",
        ) from None
