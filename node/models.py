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
from typing import Annotated

import msgspec

from node.verifiers import VERIFIERS

ENGINES = ("docker", "noop")
PUBLISHERS = ("noop",)

# Ceilings that keep one job spec from exhausting a node; generous on purpose.
MAX_TIMEOUT_S = 24 * 3600.0
MAX_CONCURRENCY = 1000
MAX_ARGS = 256
MAX_ARG_LEN = 8192
MAX_CPU = 1024.0
MAX_MEMORY = 1 << 50
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
    publisher: str = "noop"
    network: bool = False
    step: bool = False  # pause before the verdict and before publication (DESIGN §10)


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
    """State of one (shard, node) pair, as DESIGN §5 lists it."""

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
    shards: int = 1


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
    detail: dict[str, str | int | float | bool | None] = msgspec.field(default_factory=dict)


class JobRecord(msgspec.Struct):
    """What a node knows of a job: the job, its derived state and executions."""

    job: Job
    state: JobState
    updated_at: float
    reason: str = ""
    executions: list[Execution] = msgspec.field(default_factory=list)


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
    return spec


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
