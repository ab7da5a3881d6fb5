"""The job model: specs, states and the records both ends of a job keep.

Everything here is a msgspec struct, so the same types validate API input, cross
the wire and are stored. Validation beyond the schema (cross-field rules) lives in
:func:`validate_spec`, which raises :class:`SpecError` naming the field.
"""

from __future__ import annotations

import enum
import re
import time
import uuid
from typing import Annotated, Any

import msgspec

from node.content import ContentError, parse_cid
from node.publishers import PUBLISHERS
from node.sharding import (
    INPUTS_ROOT,
    InputError,
    check_mount_path,
    check_mounts,
    glob_match,
)
from node.verifiers import VERIFIERS

ENGINES = ("docker", "noop")

# Ceilings that keep one job spec from exhausting a node; generous on purpose.
MAX_TIMEOUT_S = 24 * 3600.0
MAX_CONCURRENCY = 1000
MAX_ARGS = 256
MAX_ARG_LEN = 8192
MAX_CPU = 1024.0
MAX_MEMORY = 1 << 50
MAX_INPUTS = 64
MAX_SHARDS = 1000
MAX_RETRIES = 10
# Time allowed beyond a job's own timeout for its results to reach the requester.
RESULTS_GRACE_S = 30.0
# A spec must fit in one JobAnnounced, whatever its parts.
MAX_SPEC_BYTES = 64 * 1024

# Bounded so every count fits the wire format (msgpack ints are 64-bit).
_Count = Annotated[int, msgspec.Meta(ge=-(1 << 31), le=1 << 31)]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SpecError(ValueError):
    """A job spec is invalid; ``field`` is the dotted path of what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Resources(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What one shard may use: CPU in cores, memory in bytes (0 = no limit)."""

    cpu: Annotated[float, msgspec.Meta(ge=0, le=MAX_CPU)] = 0.0
    memory: Annotated[int, msgspec.Meta(ge=0, le=MAX_MEMORY)] = 0


class Deal(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """How many nodes run each shard and how many must agree."""

    concurrency: _Count = 1
    confidence: _Count = 0
    min_bids: _Count = 0


class InputSource(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Published content (a UnixFS CID) mounted read-only at ``path`` under /inputs."""

    cid: str
    path: str = INPUTS_ROOT


class Sharding(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Split the input entries matching ``glob_pattern`` into shards of ``batch_size``."""

    glob_pattern: str
    batch_size: _Count = 1


class JobSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What a user submits: the work, the deal, and how results are checked."""

    image: str = ""
    command: list[str] = msgspec.field(default_factory=list)
    entrypoint: list[str] | None = None
    engine: str = "docker"
    env: dict[str, str] = msgspec.field(default_factory=dict)
    timeout: float = 600.0
    resources: Resources = Resources()
    deal: Deal = Deal()
    verifier: str = "noop"
    publisher: str = "ipfs"
    network: bool = False
    step: bool = False  # pause before the verdict and before publication (README, step mode)
    # Runs of a shard started again elsewhere after its node was lost (README, failures).
    max_retries: _Count = 2
    # How long a job may wait for a free slot before it ends ``error``.
    queue_timeout: float = 600.0
    inputs: list[InputSource] = msgspec.field(default_factory=list)
    sharding: Sharding | None = None


class JobState(enum.StrEnum):
    CREATED = "created"
    BIDDING = "bidding"
    RUNNING = "running"
    VERIFYING = "verifying"
    PUBLISHING = "publishing"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.ERROR, JobState.CANCELLED)


class ExecutionState(enum.StrEnum):
    """State of one (shard, node) pair, as README, job lifecycle lists it."""

    BID = "bid"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RUNNING = "running"
    PROPOSED = "proposed"
    RESULTS_ACCEPTED = "results_accepted"
    RESULTS_REJECTED = "results_rejected"
    PUBLISHED = "published"
    ERROR = "error"


class Job(msgspec.Struct, frozen=True):
    """A submitted job as announced: its id, its requester and its spec."""

    id: str
    requester: str
    spec: JobSpec
    created_at: float
    shards: Annotated[int, msgspec.Meta(ge=1, le=MAX_SHARDS)] = 1


class Execution(msgspec.Struct):
    """One node's part in one shard of a job."""

    job_id: str
    shard: int
    node: str
    state: ExecutionState
    updated_at: float
    result_id: str | None = None
    result_url: str | None = None
    exit_code: int | None = None
    stdout_preview: str | None = None
    reason: str | None = None


class JobEvent(msgspec.Struct, frozen=True):
    """One line of a job's event log: what happened, when, and on whose word."""

    job_id: str
    kind: str
    at: float
    node: str = ""
    shard: int | None = None
    # JSON values: a step-mode gate records the proposals and votes it holds as mappings.
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


class JobRecord(msgspec.Struct):
    """What a node knows of a job: the job, its derived state and executions."""

    job: Job
    state: JobState
    updated_at: float
    reason: str = ""
    executions: list[Execution] = msgspec.field(default_factory=list)


class ShardResult(msgspec.Struct, frozen=True):
    """One shard's published result: its CID (None until published), the nodes that
    published it and where (``ipfs://CID`` or a node's results URL)."""

    shard: int
    cid: str | None
    providers: list[str]
    locations: list[str]


def shard_results(record: JobRecord) -> list[ShardResult]:
    """Every shard of ``record``'s job, in order, with what was published of it."""
    published: dict[int, list[Execution]] = {k: [] for k in range(record.job.shards)}
    for e in record.executions:
        if e.state is ExecutionState.PUBLISHED and e.result_id and e.shard in published:
            published[e.shard].append(e)
    return [
        ShardResult(
            shard=k,
            cid=done[0].result_id if done else None,
            providers=[e.node for e in done],
            locations=sorted({e.result_url for e in done if e.result_url}),
        )
        for k, done in published.items()
    ]


def new_job_id() -> str:
    return str(uuid.uuid4())


def now() -> float:
    return time.time()


def validate_spec(spec: JobSpec, network_size: int | None = None) -> JobSpec:
    """Check the rules the schema cannot express; return ``spec`` unchanged.

    Raises :class:`SpecError` naming the first offending field. ``network_size``
    (when known) bounds the concurrency a job may ask for.
    """
    if spec.engine not in ENGINES:
        raise SpecError("engine", f"unknown engine {spec.engine!r}; known: {', '.join(ENGINES)}")
    if spec.engine == "docker" and not spec.image.strip():
        raise SpecError("image", "a docker job needs an image, e.g. 'busybox'")
    if spec.engine == "docker" and not spec.command and not spec.entrypoint:
        raise SpecError("command", "a docker job needs a command or an entrypoint")
    if len(spec.command) > MAX_ARGS or any(len(a) > MAX_ARG_LEN for a in spec.command):
        raise SpecError("command", f"at most {MAX_ARGS} arguments of {MAX_ARG_LEN} chars")
    for name in spec.env:
        if not _ENV_NAME.fullmatch(name):
            raise SpecError(f"env.{name}", "not a valid environment variable name")
    if not 0 < spec.timeout <= MAX_TIMEOUT_S:
        raise SpecError("timeout", f"must be in (0, {MAX_TIMEOUT_S:.0f}] seconds")
    if not 0 <= spec.max_retries <= MAX_RETRIES:
        raise SpecError("max_retries", f"must be between 0 and {MAX_RETRIES}")
    if not 0 < spec.queue_timeout <= MAX_TIMEOUT_S:
        raise SpecError("queue_timeout", f"must be in (0, {MAX_TIMEOUT_S:.0f}] seconds")
    deal = spec.deal
    if not 1 <= deal.concurrency <= MAX_CONCURRENCY:
        raise SpecError("deal.concurrency", f"must be between 1 and {MAX_CONCURRENCY}")
    if network_size is not None and deal.concurrency > network_size:
        raise SpecError(
            "deal.concurrency",
            f"concurrency {deal.concurrency} but only {network_size} nodes are in the network",
        )
    if not 0 <= deal.confidence <= deal.concurrency:
        raise SpecError("deal.confidence", "must be between 0 and deal.concurrency")
    if deal.min_bids < 0:
        raise SpecError("deal.min_bids", "must not be negative")
    encoded = len(msgspec.msgpack.encode(spec))
    if encoded > MAX_SPEC_BYTES:
        parts = {"command": spec.command, "entrypoint": spec.entrypoint, "env": spec.env}
        largest = max(parts, key=lambda name: len(msgspec.msgpack.encode(parts[name])))
        raise SpecError(largest, f"the spec is {encoded} bytes; at most {MAX_SPEC_BYTES}")
    if spec.verifier not in VERIFIERS:
        raise SpecError(
            "verifier", f"unknown verifier {spec.verifier!r}; known: {', '.join(VERIFIERS)}"
        )
    if spec.publisher not in PUBLISHERS:
        raise SpecError(
            "publisher", f"unknown publisher {spec.publisher!r}; known: {', '.join(PUBLISHERS)}"
        )
    _validate_inputs(spec)
    return spec


def _validate_inputs(spec: JobSpec) -> None:
    if len(spec.inputs) > MAX_INPUTS:
        raise SpecError("inputs", f"at most {MAX_INPUTS} inputs")
    for i, source in enumerate(spec.inputs):
        try:
            canonical = parse_cid(source.cid).text
        except ContentError as exc:
            raise SpecError(f"inputs[{i}].cid", str(exc)) from None
        if canonical != source.cid:
            raise SpecError(f"inputs[{i}].cid", f"write the CID as {canonical}")
        try:
            check_mount_path(source.path)
        except InputError as exc:
            raise SpecError(f"inputs[{i}].path", str(exc)) from None
    try:
        check_mounts([source.path for source in spec.inputs])
    except InputError as exc:
        raise SpecError("inputs", str(exc)) from None
    sharding = spec.sharding
    if sharding is None:
        return
    if not spec.inputs:
        raise SpecError("sharding", "sharding splits the job's inputs: give inputs too")
    if sharding.batch_size < 1:
        raise SpecError("sharding.batch_size", "must be at least 1")
    try:
        glob_match(sharding.glob_pattern, INPUTS_ROOT)
    except InputError as exc:
        raise SpecError("sharding.glob_pattern", str(exc)) from None


_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


def decode_spec(body: bytes, network_size: int | None = None) -> JobSpec:
    """Decode and validate a JSON job spec; raises :class:`SpecError`."""
    try:
        spec = msgspec.json.decode(body, type=JobSpec)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _PATH.search(text)
        field = match.group(1) if match else ""
        message = _PATH.sub("", text)
        if "unknown field" in message and "`" in message:
            unknown = message.split("`")[1]
            field = f"{field}.{unknown}" if field else unknown
        raise SpecError(field or "body", message) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise SpecError("body", f"not valid JSON: {exc}") from None
    return validate_spec(spec, network_size)
