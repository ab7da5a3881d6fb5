"""The wire protocol's messages and who may send each (README, dispatch).

A requester offers each shard straight to chosen nodes (:class:`JobOffered`); the
offered node answers in the offer's own reply, with a :class:`Bid` or an
:class:`OfferDeclined`. Gossip (topic ``bacalhau/jobs/1``) is the fallback and
carries :class:`JobAnnounced` and :class:`BiddingClosed`. Everything else travels
on the direct protocol ``/bacalhau/job/1.0.0`` (warm streams,
:mod:`node.p2p.streams`), where every message gets an :class:`Ack`. Messages are
msgpack-encoded tagged msgspec structs; :func:`decode` validates the schema and
raises :class:`MessageError` for anything malformed.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import msgspec

from node.models import Job

JOBS_TOPIC = "bacalhau/jobs/1"
JOB_PROTOCOL = "/bacalhau/job/1.0.0"

# A message bigger than this is malformed: the largest legitimate one is a job
# spec plus a bounded stdout preview.
MAX_MESSAGE_BYTES = 256 * 1024
# How often a running execution says so; a requester that hears nothing for
# HEARTBEAT_TIMEOUT_S takes the node as lost (README, failures).
HEARTBEAT_INTERVAL_S = 1.0
HEARTBEAT_TIMEOUT_S = 3.5


class MessageError(ValueError):
    """A message could not be decoded or is not valid; the text says why."""


class _Message(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, frozen=True):
    job_id: str


class JobAnnounced(_Message, tag="JobAnnounced"):
    """A job, or a later round of bidding on some of its shards (``shards``; None:
    every shard). ``round`` counts per shard: a node bids once per shard, again only
    if its bid was rejected."""

    job: Job
    requester_addrs: list[str] = msgspec.field(default_factory=list)
    round: int = 0
    window: float = 5.0
    shards: list[int] | None = None


class JobOffered(_Message, tag="JobOffered"):
    """One shard offered to one node, which answers at once in the reply: a
    :class:`Bid` (it holds a slot for it) or an :class:`OfferDeclined`. ``window``:
    how long the bid waits for the requester's answer."""

    job: Job
    shard: int = 0
    window: float = 5.0


DeclineReason = Literal["full", "no_image", "too_big", "ran_before", "unknown_job"]


class OfferDeclined(_Message, tag="OfferDeclined"):
    """Why an offered node will not bid: ``full`` (no free slot now), ``no_image``
    (it has not got the job's engine or image), ``too_big`` (more CPU or memory than
    it has), ``ran_before`` (it ran this shard already), ``unknown_job``."""

    shard: int = 0
    reason: DeclineReason = "full"
    detail: str = ""


class BiddingClosed(_Message, tag="BiddingClosed"):
    requester: str
    shard: int = 0


class Bid(_Message, tag="Bid"):
    shard: int = 0


class BidAccepted(_Message, tag="BidAccepted"):
    shard: int = 0


class BidRejected(_Message, tag="BidRejected"):
    shard: int = 0
    reason: str = ""


class ResultsProposed(_Message, tag="ResultsProposed"):
    """``sealed_result``: the result id (CID) sealed to the requester's key
    (:mod:`node.sealing`), so no other node can copy it."""

    shard: int
    sealed_result: bytes
    exit_code: int
    stdout_preview: str = ""
    # How long the container ran, by the compute node's clock (README, job lifecycle).
    run_seconds: float = 0.0
    # Where that node's time went, ms: the executor's phases (create, start, wait,
    # logs, outputs, remove), then storing the results tree (``results``) and sealing.
    phases_ms: Annotated[
        dict[Annotated[str, msgspec.Meta(max_length=16)], float], msgspec.Meta(max_length=12)
    ] = msgspec.field(default_factory=dict)


class ResultsAccepted(_Message, tag="ResultsAccepted"):
    shard: int = 0


class ResultsRejected(_Message, tag="ResultsRejected"):
    shard: int = 0
    reason: str = ""


class ResultsPublished(_Message, tag="ResultsPublished"):
    shard: int
    result_id: str
    location: str
    publish_ms: float = 0.0  # the publisher's own time, by the compute node's clock


class ComputeError(_Message, tag="ComputeError"):
    shard: int = 0
    message: str = ""


class Cancelled(_Message, tag="Cancelled"):
    """Stop the job's work on this node: every shard (``shards`` None) or those listed
    (a node the requester gave up on, whose shard runs elsewhere now)."""

    reason: str = ""
    shards: Annotated[list[int], msgspec.Meta(max_length=1000)] | None = None


class ExecutionHeartbeat(_Message, tag="ExecutionHeartbeat"):
    """An accepted node still runs ``shard``: sent every
    :data:`HEARTBEAT_INTERVAL_S` until its proposal is out (README, failures)."""

    shard: int = 0


OutputStream = Literal["stdout", "stderr"]
#: A line of live output longer than this is cut (the results tree keeps it whole).
MAX_OUTPUT_LINE = 4096
#: Lines per :class:`JobOutput` at most (the sender also bounds a batch's characters,
#: so that it stays below :data:`MAX_MESSAGE_BYTES`).
MAX_OUTPUT_BATCH = 1000


class OutputLine(msgspec.Struct, array_like=True, frozen=True):
    """One line a running container wrote: its stream, when (Unix time, by the
    compute node's Docker daemon) and its text without the newline."""

    stream: OutputStream
    time: float
    line: Annotated[str, msgspec.Meta(max_length=MAX_OUTPUT_LINE)]


class JobOutput(_Message, tag="JobOutput"):
    """Lines an accepted node's run of ``shard`` wrote since its last batch, oldest
    first. ``dropped``: lines it lost before them (a run that outruns its sending
    loses its oldest unsent lines, never blocks; README, live output)."""

    shard: int = 0
    lines: Annotated[list[OutputLine], msgspec.Meta(max_length=MAX_OUTPUT_BATCH)] = msgspec.field(
        default_factory=list
    )
    dropped: Annotated[int, msgspec.Meta(ge=0)] = 0


class ExecutionLost(_Message, tag="ExecutionLost"):
    """A restarted node lost its run of ``shard``: the requester re-runs it at once."""

    shard: int = 0
    reason: str = ""


class Status(_Message, tag="Status"):
    """A restarted requester asks an accepted node where its run of ``shard`` stands;
    the node answers in the reply with a :class:`StatusReport`."""

    shard: int = 0


RunState = Literal["running", "proposed", "unknown"]


class StatusReport(_Message, tag="StatusReport"):
    """Where this node's run of ``shard`` stands: ``running``, ``proposed`` (its
    proposal is being delivered), or ``unknown`` (it holds no run of it: lost).
    Travels only inside an :class:`Ack`."""

    shard: int = 0
    state: RunState = "unknown"


class SlotFreed(_Message, tag="SlotFreed"):
    """A node that declined this requester's offer as ``full`` has a free slot now;
    ``job_id`` is the job whose offer it declined."""

    slots: int = 1


Message = (
    JobOffered
    | OfferDeclined
    | JobAnnounced
    | BiddingClosed
    | Bid
    | BidAccepted
    | BidRejected
    | ResultsProposed
    | ResultsAccepted
    | ResultsRejected
    | ResultsPublished
    | ComputeError
    | Cancelled
    | ExecutionHeartbeat
    | JobOutput
    | ExecutionLost
    | SlotFreed
    | Status
)

GOSSIP_TYPES: tuple[type, ...] = (JobAnnounced, BiddingClosed)
DIRECT_TYPES: tuple[type, ...] = (
    JobOffered,
    OfferDeclined,
    Bid,
    BidAccepted,
    BidRejected,
    ResultsProposed,
    ResultsAccepted,
    ResultsRejected,
    ResultsPublished,
    ComputeError,
    Cancelled,
    ExecutionHeartbeat,
    JobOutput,
    ExecutionLost,
    SlotFreed,
    Status,
)


class Sender(enum.Enum):
    """Who may send a message type (the entitlement table (README, dispatch))."""

    REQUESTER = "the job's requester"
    BIDDER = "the node itself, for a shard it was offered or saw announced"
    ACCEPTED = "a node whose bid on that shard was accepted"
    OFFERED = "a node this node offered a shard to"


ENTITLED: dict[type, Sender] = {
    JobOffered: Sender.REQUESTER,
    JobAnnounced: Sender.REQUESTER,
    BiddingClosed: Sender.REQUESTER,
    BidAccepted: Sender.REQUESTER,
    BidRejected: Sender.REQUESTER,
    ResultsAccepted: Sender.REQUESTER,
    ResultsRejected: Sender.REQUESTER,
    Cancelled: Sender.REQUESTER,
    Status: Sender.REQUESTER,
    Bid: Sender.BIDDER,
    OfferDeclined: Sender.BIDDER,
    ResultsProposed: Sender.ACCEPTED,
    ResultsPublished: Sender.ACCEPTED,
    ComputeError: Sender.ACCEPTED,
    ExecutionHeartbeat: Sender.ACCEPTED,
    JobOutput: Sender.ACCEPTED,
    ExecutionLost: Sender.ACCEPTED,
    SlotFreed: Sender.OFFERED,
}

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes) -> Message:
    """Decode one message; raises :class:`MessageError` naming what is wrong."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        return _decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MessageError(str(exc)) from None


class Ack(msgspec.Struct, frozen=True):
    """The reply to every direct message: accepted, or why not. The reply to a
    :class:`JobOffered` carries the offered node's ``answer``, the reply to a
    :class:`Status` a :class:`StatusReport`."""

    ok: bool
    error: str = ""
    answer: Bid | OfferDeclined | StatusReport | None = None


_ack_decoder = msgspec.msgpack.Decoder(Ack)


def encode_ack(ack: Ack) -> bytes:
    return _encoder.encode(ack)


def decode_ack(data: bytes) -> Ack:
    try:
        return _ack_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MessageError(f"bad acknowledgement: {exc}") from None
