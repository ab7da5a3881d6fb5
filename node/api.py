"""The node's HTTP API (README, the node API), served by hypercorn on the node's trio loop.

Every error is JSON ``{"error": code, "message": ..., "field": ...}`` with a 4xx
status for bad input; an unexpected failure is a 500 with the same shape and no
traceback. Binds 127.0.0.1 unless told otherwise. The node is known here by its shape,
:class:`ApiNode` (:class:`node.node.Node` starts the API, so this module cannot import
it).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Route

from node.content import ContentError, parse_cid
from node.content.store import BlockNotFound
from node.content.tarball import dag_entries, import_archive, tar_stream
from node.executors.base import ExecutorError
from node.logs import LogTail, read_tail
from node.models import Job, JobRecord, JobSpec, JobState, SpecError, decode_spec, shard_results
from node.p2p.exchange import (
    FetchError,
    FetchTimeout,
    NotProvided,
    ProvidersUnreachable,
    parse_providers,
)
from node.requester import JobNotOpen, NotAtGate, Requester
from node.results import ResultNotFound, ResultStore
from profiles.cpu import CLOCKS, MAX_SECONDS, ProfileBusy, profile_cpu
from profiles.memory import profile_memory

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from node.content.store import BlockStore
    from node.context import NodeContext
    from node.executors.docker import DockerExecutor
    from node.messages import OutputStream
    from node.p2p.exchange import Exchange
    from node.p2p.membership import Membership
    from node.store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BODY_BYTES = 1 << 20
MAX_CONTENT_BYTES = 1 << 30  # a tar added with POST /api/v1/content
FETCH_TIMEOUT_S = 300
MAX_FETCH_TIMEOUT_S = 3600
_WRITE_CHUNK = 1 << 20
MAX_LIST_LIMIT = 1000
MAX_WAIT_S = 60
DEFAULT_LOG_LINES = 200
MAX_LOG_LINES = 5000
_MAX_OFFSET = 1 << 62
# How often a followed log file is read again for what was written since.
LOG_FOLLOW_POLL_S = 0.25
NDJSON = "application/x-ndjson"
_OUTPUT_STREAMS = ("stdout", "stderr")


class ApiConfig(Protocol):
    """What the API reads of the node's configuration (:class:`node.node.NodeConfig`)."""

    @property
    def data_dir(self) -> Path: ...
    @property
    def log_file(self) -> Path | None: ...


class ApiNode(Protocol):
    """What the API uses of its node; :class:`node.node.Node` is one."""

    @property
    def node_id(self) -> str: ...
    @property
    def config(self) -> ApiConfig: ...
    @property
    def ctx(self) -> NodeContext: ...
    @property
    def store(self) -> Store: ...
    @property
    def requester(self) -> Requester: ...
    @property
    def membership(self) -> Membership: ...
    @property
    def docker(self) -> DockerExecutor: ...
    @property
    def results(self) -> ResultStore: ...
    @property
    def blocks(self) -> BlockStore: ...
    @property
    def exchange(self) -> Exchange: ...
    @property
    def metrics_registry(self) -> CollectorRegistry: ...
    def health(self) -> dict[str, Any]: ...
    def info(self) -> dict[str, Any]: ...
    def stats(self) -> dict[str, Any]: ...
    def contention(self) -> dict[str, Any]: ...
    async def submit(self, spec: JobSpec) -> Job: ...


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def json_response(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


def _error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    body: dict[str, Any] = {"error": code, "message": message}
    if field is not None:
        body["field"] = field
    return json_response(body, status)


def _bool_param(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise ApiError(400, "bad_parameter", f"{name} must be true or false", name)
    return raw in ("true", "1")


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_parameter", f"{name} must be an integer", name) from None
    if not lo <= value <= hi:
        raise ApiError(400, "bad_parameter", f"{name} must be between {lo} and {hi}", name)
    return value


async def _profile_session(request: Request, run: Callable[[int], Awaitable[T]]) -> T:
    """``run(seconds)`` for the request's ``seconds`` (default 10); 409 while one runs."""
    seconds = _int_param(request, "seconds", 10, 1, int(MAX_SECONDS))
    try:
        return await run(seconds)
    except ProfileBusy as exc:
        raise ApiError(409, "busy", f"{exc}; try again when it ends") from None


async def _save_body(request: Request, path: Path, limit: int) -> int:
    """Write the request body to ``path``, refusing (413) one over ``limit`` bytes;
    returns its size. Disk writes go to a worker thread a MiB at a time."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"an archive is at most {limit} bytes")
    total = 0
    pending = bytearray()
    with open(path, "wb") as out:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise ApiError(413, "too_large", f"an archive is at most {limit} bytes")
            pending += chunk
            if len(pending) >= _WRITE_CHUNK:
                await trio.to_thread.run_sync(out.write, bytes(pending))
                pending.clear()
        await trio.to_thread.run_sync(out.write, bytes(pending))
    return total


def _import_saved(archive: Path, node: ApiNode, scratch: Path) -> str:
    with open(archive, "rb") as stream:
        return import_archive(stream, node.blocks.put, scratch).text


async def _in_threads(
    pieces: Iterator[bytes], limiter: trio.CapacityLimiter
) -> AsyncIterator[bytes]:
    """``pieces``, each produced in a worker thread: producing one reads and verifies
    blocks from disk, which must not stall the loop."""
    while True:
        piece = await trio.to_thread.run_sync(next, pieces, None, limiter=limiter)
        if piece is None:
            return
        yield piece


def _ndjson(documents: list[dict[str, object]]) -> bytes:
    return b"".join(msgspec.json.encode(document) + b"\n" for document in documents)


def _loopback_api(url: str) -> bool:
    """Whether ``url`` (a peer's API address, as it announced it) is on this machine's
    loopback: the only kind of address a node relays a request to."""
    parsed = urllib.parse.urlsplit(url)
    return parsed.scheme in ("http", "https") and parsed.hostname in ("127.0.0.1", "localhost")


async def _relay_output(request: Request, requester: str, apis: Mapping[str, str]) -> Response:
    """The answer of the requester's API to the same request, streamed through; a 409
    naming the requester when its API is unknown or not on this machine, a 502 when
    it cannot be reached."""
    api = apis.get(requester, "")
    if not _loopback_api(api):
        raise ApiError(
            409,
            "not_requester",
            f"job {request.path_params['job_id']} was requested on node {requester}, which"
            " keeps its output" + (f"; ask its API at {api}" if api else "; ask that node's API"),
        )
    import httpx  # only a node that relays pays for the import

    stack = contextlib.AsyncExitStack()
    client = await stack.enter_async_context(
        httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))
    )
    try:
        answer = await stack.enter_async_context(
            client.stream("GET", f"{api}{request.url.path}", params=request.query_params)
        )
    except httpx.HTTPError as exc:
        await stack.aclose()
        raise ApiError(
            502, "unreachable", f"the job's requester {requester} ({api}) did not answer: {exc}"
        ) from None

    async def relayed() -> AsyncIterator[bytes]:
        async with stack:
            try:
                async for piece in answer.aiter_raw():
                    yield piece
            except httpx.HTTPError as exc:
                log.info("relay of %s from %s ended: %s", request.url.path, api, exc)

    media = answer.headers.get("content-type", NDJSON)
    return StreamingResponse(relayed(), status_code=answer.status_code, media_type=media)


def build_app(node: ApiNode) -> Starlette:
    """The Starlette app for ``node``."""

    async def healthz(request: Request) -> Response:
        return json_response(node.health())

    async def node_info(request: Request) -> Response:
        return json_response(node.info())

    async def stats(request: Request) -> Response:
        return json_response(node.stats())

    async def debug_locks(request: Request) -> Response:
        return json_response({"node": node.node_id, **node.contention()})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(node.metrics_registry), media_type=CONTENT_TYPE_LATEST)

    async def submit(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, "too_large", f"a job spec is at most {MAX_BODY_BYTES} bytes")
        try:
            spec = decode_spec(body)
            job = await node.submit(spec)
        except SpecError as exc:
            raise ApiError(400, "invalid_spec", exc.message, exc.field) from None
        return json_response({"id": job.id, "requester": job.requester, "state": "bidding"}, 201)

    async def list_jobs(request: Request) -> Response:
        limit = _int_param(request, "limit", 100, 1, MAX_LIST_LIMIT)
        role = request.query_params.get("role")
        if role not in (None, "requester", "compute"):
            raise ApiError(400, "bad_parameter", "role must be requester or compute", "role")
        states = None
        if raw_state := request.query_params.get("state"):
            try:
                states = [JobState(s) for s in raw_state.split(",")]
            except ValueError:
                known = ", ".join(s.value for s in JobState)
                raise ApiError(
                    400, "bad_parameter", f"state must be one of {known}", "state"
                ) from None
        records = await node.ctx.db(node.store.list_jobs, limit=limit, states=states, role=role)
        return json_response({"jobs": records})

    async def job_or_404(job_id: str) -> JobRecord:
        record = await node.ctx.db(node.store.get_job, job_id)
        if record is None:
            raise ApiError(404, "not_found", f"no job {job_id!r} on this node", "job_id")
        return record

    async def describe(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        # ?wait=S: a job this node requested is described once it ends, or after S s.
        wait = _int_param(request, "wait", 0, 0, MAX_WAIT_S)
        if wait:
            await job_or_404(job_id)
            await node.requester.wait_ended(job_id, wait)
        record = await job_or_404(job_id)
        events = await node.ctx.db(node.store.events, job_id)
        gates = [
            {"shard": shard, "name": name, **behind}
            for shard, name, behind in node.requester.gates_of(job_id)
        ]
        return json_response(
            {
                "job": record,
                "requester": record.job.requester,
                "node": node.node_id,
                "events": events,
                # Each shard's published CID and who holds it (ipfs) or serves it (noop).
                "shards": shard_results(record),
                # Step mode: the gates the job waits at (one per shard), and what is behind.
                "gate": gates[0] if gates else None,
                "gates": gates,
                # On its requester, while shards look for nodes: what was tried, and why.
                "waiting": [w.document() for w in node.requester.waits_of(job_id)],
            }
        )

    async def step(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        await job_or_404(job_id)
        try:
            opened = node.requester.step(job_id)
        except NotAtGate as exc:
            raise ApiError(
                409,
                "not_at_gate",
                f"{exc}; only a job submitted with step: true waits at gates, on its requester",
            ) from None
        names = sorted({name for _, name in opened})
        return json_response(
            {
                "id": job_id,
                "opened": ", ".join(names),
                "gates": [{"shard": shard, "name": name} for shard, name in opened],
            }
        )

    async def cancel(request: Request) -> Response:
        """Cancel a job on its requester; elsewhere the 409 names the requester."""
        job_id = request.path_params["job_id"]
        record = await job_or_404(job_id)
        requester = record.job.requester
        if requester != node.node_id:
            api = node.membership.live_peers().get(requester, "")
            raise ApiError(
                409,
                "not_requester",
                f"job {job_id} was requested on node {requester}"
                + (f" ({api}); cancel it there" if api else "; cancel it on that node"),
            )
        try:
            await node.requester.cancel(job_id, "cancelled by the user")
        except JobNotOpen:
            record = await job_or_404(job_id)
            raise ApiError(
                409,
                "job_ended",
                f"job {job_id} has already ended ({record.state.value}): nothing to cancel",
            ) from None
        return json_response({"id": job_id, "state": JobState.CANCELLED.value})

    async def job_output(request: Request) -> Response:
        """A job's live output as NDJSON, one record per line (README, live output):
        ``{seq, shard, node, time, stream, line}`` for a line, ``{seq, shard, node,
        time, dropped}`` for lines lost on the way, and last ``{"state", "ended"}``.
        Without ``follow`` it gives what its requester holds now; with it, each
        line as it arrives, until the job ends. ``shard``, ``node`` and ``stream``
        narrow it. Kept by the requester only: elsewhere the request is relayed
        to the requester's API when that is on this machine, else a 409 names it."""
        job_id = request.path_params["job_id"]
        record = await job_or_404(job_id)
        shard = _int_param(request, "shard", -1, 0, record.job.shards - 1)
        follow = _bool_param(request, "follow")
        stream = request.query_params.get("stream")
        if stream is not None and stream not in _OUTPUT_STREAMS:
            raise ApiError(400, "bad_parameter", "stream must be stdout or stderr", "stream")
        requester = record.job.requester
        if requester != node.node_id:
            return await _relay_output(request, requester, node.membership.live_peers())
        output = node.requester.outputs.get(job_id)
        if output is None and record.state.terminal:
            raise ApiError(
                404,
                "output_gone",
                f"job {job_id} ended ({record.state.value}) and its live output is no"
                " longer kept; its published results hold stdout and stderr",
                "job_id",
            )
        if output is None:  # open, and nothing printed yet (or this node restarted)
            output = node.requester.outputs.open(job_id)
        cursor = output.cursor()
        narrow = {
            "shard": None if shard < 0 else shard,
            "node": request.query_params.get("node") or None,
            "stream": cast("OutputStream | None", stream),
        }

        async def last_line() -> bytes:
            state = (await job_or_404(job_id)).state
            return _ndjson([{"state": state.value, "ended": state.terminal}])

        if not follow:
            found = [r.document() for r in output.read(cursor, **narrow)]
            return Response(_ndjson(found) + await last_line(), media_type=NDJSON)

        async def records() -> AsyncIterator[bytes]:
            while True:
                ended = output.ended
                if found := output.read(cursor, **narrow):
                    yield _ndjson([r.document() for r in found])
                if ended:
                    yield await last_line()
                    return
                await output.wait()

        return StreamingResponse(records(), media_type=NDJSON)

    async def images(request: Request) -> Response:
        """The Docker images this node can run jobs in (a job names one of these)."""
        try:
            tags = await node.docker.images()
        except ExecutorError as exc:
            raise ApiError(503, "docker_unavailable", str(exc)) from None
        return json_response({"node": node.node_id, "images": tags})

    async def job_events(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        await job_or_404(job_id)
        return json_response({"events": await node.ctx.db(node.store.events, job_id)})

    async def result(request: Request) -> Response:
        result_id = request.path_params["result_id"]
        try:
            path = node.results.path(result_id)
        except ResultNotFound:
            raise ApiError(
                404, "not_found", f"no result {result_id!r} on this node", "result_id"
            ) from None
        return FileResponse(path, media_type="application/x-tar", filename=f"{result_id}.tar")

    async def add_content(request: Request) -> Response:
        """POST a tar of one file, directory tree or symlink (node.content.tarball):
        201 ``{"cid": root}``; 400 naming a refused entry; 413 over the cap."""
        uploads = node.config.data_dir / "uploads"
        uploads.mkdir(exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=uploads))
        try:
            archive = scratch / "archive.tar"
            if await _save_body(request, archive, MAX_CONTENT_BYTES) == 0:
                raise ApiError(400, "bad_archive", "the body is empty: send a tar archive")
            try:
                cid = await node.exchange.in_thread(_import_saved, archive, node, scratch)
            except ContentError as exc:  # TarError included: the message names the entry
                raise ApiError(400, "bad_archive", str(exc)) from None
        finally:
            await trio.to_thread.run_sync(shutil.rmtree, scratch, True)
        return json_response({"cid": cid}, 201)

    async def get_content(request: Request) -> Response:
        """The tree as a streamed tar, its root named by the CID; first fetched over
        bitswap from the peers in ``?from=`` if this node lacks blocks. 400 bad CID or
        peer id, 404 missing (no provider, or none has it), 502 providers unreachable,
        504 past ``?timeout=`` seconds."""
        try:
            root = parse_cid(request.path_params["cid"])
        except ContentError as exc:
            raise ApiError(400, "bad_cid", str(exc), "cid") from None
        try:
            providers = parse_providers(request.query_params.get("from", ""), node.node_id)
        except ValueError as exc:
            raise ApiError(400, "bad_parameter", str(exc), "from") from None
        timeout = _int_param(request, "timeout", FETCH_TIMEOUT_S, 1, MAX_FETCH_TIMEOUT_S)
        try:
            report = await node.exchange.fetch(root, providers, timeout=timeout)
        except BlockNotFound as exc:
            raise ApiError(
                404,
                "not_found",
                f"this node has not got all of {root} (block {exc.cid} is missing);"
                " name a node that has it with ?from=PEER_ID",
                "cid",
            ) from None
        except NotProvided as exc:
            raise ApiError(404, "not_found", str(exc), "from") from None
        except ProvidersUnreachable as exc:
            raise ApiError(502, "unreachable", str(exc), "from") from None
        except FetchTimeout as exc:
            raise ApiError(504, "timeout", str(exc)) from None
        except FetchError as exc:  # a fetched block could not be written here
            raise ApiError(500, "store_failed", str(exc)) from None
        except ContentError as exc:
            raise ApiError(422, "bad_content", str(exc), "cid") from None
        # Blocks are read and checked again as the tar streams; one damaged since the
        # fetch ends the stream early (the client sees a truncated archive).
        pieces = tar_stream(dag_entries(root, node.blocks.get, root.text))
        return StreamingResponse(
            _in_threads(pieces, node.exchange.limiter),
            media_type="application/x-tar",
            headers={
                "content-disposition": f'attachment; filename="{root}.tar"',
                # What bitswap brought in first (0 when the node had it all).
                "x-fetched-blocks": str(report.blocks_fetched),
                "x-fetched-bytes": str(report.bytes_fetched),
                "x-fetch-seconds": f"{report.seconds:.3f}",
            },
        )

    async def debug_profile(request: Request) -> Response:
        clock = request.query_params.get("clock", "wall")
        if clock not in CLOCKS:
            raise ApiError(400, "bad_parameter", f"clock must be one of {CLOCKS}", "clock")
        profile = await _profile_session(request, lambda seconds: profile_cpu(seconds, clock=clock))
        return json_response(
            {
                "node": node.node_id,
                "seconds": profile.seconds,
                "samples": profile.samples,
                "top": profile.top,
                "html": profile.html,
                "text": profile.text,
                "speedscope": profile.speedscope,
            }
        )

    async def debug_memory(request: Request) -> Response:
        # MemoryProfileBusy is a ProfileBusy: refused with a 409 alike.
        memory = await _profile_session(request, profile_memory)
        # The keys: node, then MemoryProfile's fields (profiles/memory.py).
        return json_response({"node": node.node_id, **asdict(memory)})

    async def node_logs(request: Request) -> Response:
        """The last ``?tail=`` lines of the node's log file; with ``?after=OFFSET`` (the
        ``offset`` a previous answer gave) only the lines written since, so a client
        follows the log by polling. From the start if the file shrank below OFFSET.

        With ``?follow=true`` the answer is a stream instead: those lines, then each
        line as it is written, one per line of text, until the client goes away."""
        tail = _int_param(request, "tail", DEFAULT_LOG_LINES, 1, MAX_LOG_LINES)
        after = _int_param(request, "after", 0, 0, _MAX_OFFSET)
        follow = _bool_param(request, "follow")
        path = node.config.log_file
        if path is None:
            raise ApiError(404, "not_found", "this node logs to stderr, not to a file")

        async def read(lines: int, since: int) -> LogTail:
            try:
                return await trio.to_thread.run_sync(read_tail, path, lines, since)
            except OSError as exc:
                raise ApiError(
                    404, "not_found", f"cannot read the log file {path}: {exc}"
                ) from None

        first = await read(tail, after)
        if not follow:
            return json_response({"path": str(path), "offset": first.offset, "lines": first.lines})

        async def lines() -> AsyncIterator[bytes]:
            latest = first
            while True:
                if latest.lines:
                    yield "".join(f"{line}\n" for line in latest.lines).encode()
                await trio.sleep(LOG_FOLLOW_POLL_S)
                try:
                    latest = await read(MAX_LOG_LINES, latest.offset)
                except ApiError:
                    return  # the file went away: the stream ends

        headers = {"x-log-path": str(path)}
        return StreamingResponse(lines(), media_type="text/plain; charset=utf-8", headers=headers)

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error_response(exc.status, exc.code, exc.message, exc.field)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error_response(exc.status_code, code, f"{exc.detail}: {request.url.path}")

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # Starlette re-raises after this, and hypercorn logs the traceback to the node log.
        return _error_response(500, "internal", f"internal error: {type(exc).__name__}")

    routes = [
        Route("/api/v1/healthz", healthz),
        Route("/api/v1/node", node_info),
        Route("/api/v1/stats", stats),
        Route("/metrics", metrics),
        Route("/api/v1/jobs", submit, methods=["POST"]),
        Route("/api/v1/jobs", list_jobs, methods=["GET"]),
        Route("/api/v1/jobs/{job_id}", describe),
        Route("/api/v1/jobs/{job_id}/events", job_events),
        Route("/api/v1/jobs/{job_id}/logs", job_output),
        Route("/api/v1/jobs/{job_id}/step", step, methods=["POST"]),
        Route("/api/v1/jobs/{job_id}/cancel", cancel, methods=["POST"]),
        Route("/api/v1/images", images),
        Route("/api/v1/results/{result_id}", result),
        Route("/api/v1/content", add_content, methods=["POST"]),
        Route("/api/v1/content/{cid}", get_content),
        Route("/api/v1/logs", node_logs),
        Route("/api/v1/debug/locks", debug_locks),
        Route("/api/v1/debug/profile", debug_profile, methods=["POST"]),
        Route("/api/v1/debug/memory", debug_memory, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            ApiError: on_api_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
    )


async def serve_api(
    node: ApiNode, host: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the API until cancelled; ``task_status.started()`` once listening."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 30.0
    await serve(
        build_app(node), config, shutdown_trigger=trio.sleep_forever, task_status=task_status
    )
