"""The job model: specs, states and the records both ends of a job keep.

Everything here is a msgspec struct, so the same types validate API input, cross
the wire and are stored. Validation beyond the schema (cross-field rules) lives in
:func:`validate_spec`, which raises :class:`SpecError` naming the field; the rules of
a deal live on :class:`Deal`.

This module imports nothing of the node (stdlib and msgspec only), so a client (the
CLI, the TUI) checks a spec as the node does without loading the node. It owns:

* the names a spec may give: :data:`ENGINES`, :data:`VERIFIERS`, :data:`PUBLISHERS`.
  Their implementations (node.executors, node.verifiers, node.publishers) are kept
  in step by ``tests/unit/test_registries.py``, not by an import;
* the rules of input paths: :data:`INPUTS_ROOT`, :func:`check_mount_path`,
  :func:`check_mounts`, :func:`parse_input_arg` (an input as a user writes it) and
  the glob language of :func:`glob_match`, which :mod:`node.sharding` applies to the
  input trees;
* a CID's syntax (:func:`check_cid_syntax`); the full parse is
  :func:`node.content.parse_cid`, which the requester and the compute nodes apply
  to a spec's inputs (:func:`node.jobinputs.mounts_of`).
"""

from __future__ import annotations

import enum
import functools
import re
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import msgspec

#: The executors a spec may name (``engine``).
ENGINES: tuple[str, ...] = ("docker", "noop")
#: The verifiers a spec may name (``verifier``), in the order error messages list them.
VERIFIERS: tuple[str, ...] = ("noop", "deterministic")
#: The publishers a spec may name (``publisher``).
PUBLISHERS: tuple[str, ...] = ("ipfs", "noop")
#: Where the inputs mount in a job's container; every mount path is this or below it.
INPUTS_ROOT = "/inputs"

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
MAX_MARGIN = 16
MAX_EXTRA_RUNS = 64
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
    """How many nodes run each shard, how many must agree, and how hard a
    disagreement is checked (README, verification: escalation)."""

    concurrency: _Count = 1
    confidence: _Count = 0
    min_bids: _Count = 0
    # When proposals differ, the votes the leading result needs over the next one;
    # 1 is a plain majority, where a tie re-runs the shard on fresh nodes once.
    margin: _Count = 2
    # Runs on fresh nodes a shard may add to reach the margin (or a spot check).
    max_extra_runs: _Count = 8
    # The chance that a unanimous result is checked by one more fresh node.
    spot_check: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    # Check a unanimous result when no proposer has a record with the requester yet.
    check_newcomers: bool = False
    # Offer no run to a node the requester caught forging lately; pick spot
    # checkers and escalation runs among the nodes with the best record.
    credibility: bool = True

    @property
    def wanted_bids(self) -> int:
        """How many bids a shard needs: ``max(concurrency, min_bids)``, at least 1.
        The requester holds bids until this many came; the hash-space bidder makes
        bands of this many nodes."""
        return max(1, self.concurrency, self.min_bids)


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
    if not 1 <= deal.margin <= MAX_MARGIN:
        raise SpecError("deal.margin", f"must be between 1 and {MAX_MARGIN} votes")
    if not 0 <= deal.max_extra_runs <= MAX_EXTRA_RUNS:
        raise SpecError("deal.max_extra_runs", f"must be between 0 and {MAX_EXTRA_RUNS}")
    if not 0 <= deal.spot_check <= 1:
        raise SpecError("deal.spot_check", "must be a probability between 0 and 1")
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
            check_cid_syntax(source.cid)
        except InputError as exc:
            raise SpecError(f"inputs[{i}].cid", str(exc)) from None
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


# -- input paths and globs ------------------------------------------------------------
# The rules a spec's inputs and sharding pattern follow; node.sharding applies them to
# the input trees (README, inputs and sharding).


class InputError(ValueError):
    """An input or sharding rule is invalid or matches nothing; the text says which."""


# Every CID this network makes or reads is sha2-256 (node.content.cid). In base32, a
# CIDv1 is its fixed header (version 1, raw "bafkrei" or dag-pb "bafybei", the hash's
# code and length), then 256 bits of digest: one character holding the header's last
# 2 bits (zero) and 3 digest bits, 50 of 5 bits, and one of 3 bits and 2 zero bits.
# A base58btc CIDv0 is "Qm" and 44 characters.
_CID_SYNTAX = re.compile(
    r"b(?:afkrei|afybei)[a-h][a-z2-7]{50}[aeimquy4]|Qm[1-9A-HJ-NP-Za-km-z]{44}"
)


def check_cid_syntax(text: str) -> None:
    """Return if ``text`` is written as a CID of this network; raise :class:`InputError`
    naming it if not. Syntax only: :func:`node.content.parse_cid` decodes it."""
    if not _CID_SYNTAX.fullmatch(text):
        raise InputError(
            f"CID {text!r}: not a sha2-256 CID, raw or dag-pb, in base32 (bafkrei... or"
            " bafybei..., 59 characters) or base58btc (Qm..., 46 characters)"
        )


def parse_input_arg(text: str) -> tuple[str, str]:
    """``CID`` -> ``(CID, '/inputs')``; ``CID:/inputs/prev`` -> ``(CID, '/inputs/prev')``:
    an input as ``devstack submit -i`` and the TUI's form take it.

    The CID's syntax is checked (:func:`check_cid_syntax`), the path normalised by
    :func:`check_mount_path`. Raises :class:`InputError` naming what is wrong.
    """
    cid, colon, path = text.partition(":")
    if not cid:
        raise InputError(f"input {text!r}: no CID (write CID or CID:{INPUTS_ROOT}/PATH)")
    try:
        check_cid_syntax(cid)
        return cid, check_mount_path(path) if colon else INPUTS_ROOT
    except InputError as exc:
        raise InputError(f"input {text!r}: {exc}") from None


def check_mount_path(path: str) -> str:
    """``path`` as a normalised container mount path: ``/inputs`` or a path under it.

    One trailing slash is dropped (``/inputs/`` -> ``/inputs``); nothing else is
    rewritten. Raises :class:`InputError` naming the path if it is not absolute, lies
    outside ``/inputs``, has an empty (``//``), ``.`` or ``..`` component, or holds NUL.
    """
    if "\0" in path:
        raise InputError(f"mount path {path!r}: contains NUL")
    if not path.startswith("/"):
        raise InputError(f"mount path {path!r}: must be absolute (under {INPUTS_ROOT})")
    normal = path[:-1] if len(path) > 1 and path.endswith("/") else path
    components = normal.split("/")[1:]
    for component in components:
        if component in ("", ".", ".."):
            raise InputError(f"mount path {path!r}: empty, '.' or '..' component")
    if components[0] != INPUTS_ROOT[1:]:
        raise InputError(f"mount path {path!r}: must be {INPUTS_ROOT} or under it")
    return normal


def check_mounts(paths: list[str]) -> None:
    """Returns if every path passes :func:`check_mount_path` and no two mounts are
    equal or nested (``/inputs`` and ``/inputs/a`` conflict).

    Raises :class:`InputError` naming the bad path, or both paths of a conflict.
    """
    seen: dict[str, str] = {}
    for path in paths:
        normal = check_mount_path(path)
        if normal in seen:
            raise InputError(f"mount paths {seen[normal]!r} and {path!r} are the same")
        seen[normal] = path
    for normal, path in seen.items():
        for ancestor in ancestors(normal):
            if ancestor in seen:
                raise InputError(
                    f"mount path {path!r} is inside mount path {seen[ancestor]!r};"
                    " mounts cannot nest"
                )


def ancestors(path: str) -> Iterator[str]:
    """Proper ancestors of a normalised absolute path, nearest first."""
    while True:
        path = path.rpartition("/")[0]
        if not path:
            return
        yield path


def glob_match(pattern: str, path: str) -> bool:
    """Whether container path ``path`` matches ``pattern``.

    Components are matched one by one: ``*`` matches any run of characters but ``/``,
    ``?`` one character but ``/``, ``[abc]``, ``[a-z]`` and ``[!abc]`` one character of
    (not of) a class (``]`` first in a class is literal). ``**`` as a whole component
    matches zero or more components (``/inputs/**/*.txt`` matches ``/inputs/a.txt``
    and ``/inputs/x/y/a.txt``); inside a component it is two ``*``. Dot files are not
    special and there is no escape character: ``[*]`` matches a literal ``*``. A
    pattern not starting with ``/`` is relative to ``/inputs``; one trailing ``/`` is
    ignored. A pattern is compiled once (cached), so matching many paths is cheap.

    Raises :class:`InputError` naming the pattern if it is empty, holds NUL, has an
    empty, ``.`` or ``..`` component, or an unclosed ``[``.
    """
    return _matches(_compile(pattern), path)


# A compiled pattern: per component, a regex for one path component or None for "**".
_Compiled = tuple[re.Pattern[str] | None, ...]


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> _Compiled:
    if not pattern:
        raise InputError("glob pattern is empty")
    if "\0" in pattern:
        raise InputError(f"glob pattern {pattern!r}: contains NUL")
    full = pattern if pattern.startswith("/") else f"{INPUTS_ROOT}/{pattern}"
    if len(full) > 1 and full.endswith("/"):
        full = full[:-1]
    compiled: list[re.Pattern[str] | None] = []
    for component in full.split("/")[1:]:
        if component in ("", ".", ".."):
            raise InputError(f"glob pattern {pattern!r}: empty, '.' or '..' component")
        if component != "**":
            compiled.append(re.compile(_translate(component, pattern), re.DOTALL))
        elif not compiled or compiled[-1] is not None:
            # "**/**" means "**"; collapsing keeps matching linear in the path's depth.
            compiled.append(None)
    return tuple(compiled)


def _matches(compiled: _Compiled, path: str) -> bool:
    if not path.startswith("/"):
        return False
    components = path.split("/")[1:]
    # Matching component by component, tracking every path position the pattern so far
    # can end at: no backtracking, so a hostile pattern cannot take exponential time.
    states = {0}
    for regex in compiled:
        if regex is None:
            states = set(range(min(states), len(components) + 1))
        else:
            states = {
                i + 1 for i in states if i < len(components) and regex.fullmatch(components[i])
            }
        if not states:
            return False
    return len(components) in states


def _translate(component: str, pattern: str) -> str:
    """The regex of one pattern component, matched against one path component."""
    chunks: list[list[str]] = [[]]
    i, n = 0, len(component)
    while i < n:
        char = component[i]
        i += 1
        if char == "*":
            chunks.append([])
        elif char == "?":
            chunks[-1].append(".")
        elif char == "[":
            end = i + 1 if component.startswith("!", i) else i
            # A ']' right after '[' or '[!' is a member, not the end.
            end = component.find("]", end + 1)
            if end < 0:
                raise InputError(f"glob pattern {pattern!r}: '[' without a closing ']'")
            chunks[-1].append(_char_class(component[i:end]))
            i = end + 1
        else:
            chunks[-1].append(re.escape(char))
    parts = ["".join(chunk) for chunk in chunks]
    if len(parts) == 1:
        return parts[0]
    # Between stars every chunk has a fixed length, so its earliest occurrence is always
    # the right one to take: an atomic group commits to it and the regex never backtracks
    # across stars (fnmatch does the same).
    middle = "".join(f"(?>.*?{part})" for part in parts[1:-1])
    return f"{parts[0]}{middle}.*{parts[-1]}"


def _char_class(body: str) -> str:
    negated = body.startswith("!")
    if negated:
        body = body[1:]
    items = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = body[i], body[i + 2]
            # A reversed range is empty, as in fnmatch; the regex engine would reject it.
            if low <= high:
                items.append(f"{re.escape(low)}-{re.escape(high)}")
            i += 3
        else:
            items.append(re.escape(body[i]))
            i += 1
    members = "".join(items)
    if negated:
        return f"[^{members}]" if members else "."
    return f"[{members}]" if members else "(?!)"
