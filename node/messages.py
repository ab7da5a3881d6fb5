"""The wire protocol's messages and who may send each (DESIGN §4).

Gossip (topic ``bacalhau/jobs/1``) carries :class:`JobAnnounced` and
:class:`BiddingClosed`. Everything else travels on the direct stream protocol
``/bacalhau/job/1.0.0``. Messages are msgpack-encoded
tagged msgspec structs; :func:`decode` validates the schema and raises
:class:`MessageError` for anything malformed.
"""

from __future__ import annotations

import enum

import msgspec

from node.models import Job

JOBS_TOPIC = "bacalhau/jobs/1"
JOB_PROTOCOL = "/bacalhau/job/1.0.0"

# A message bigger than this is malformed: the largest legitimate one is a job
# spec plus a bounded stdout preview.
MAX_MESSAGE_BYTES = 256 * 1024


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
    # How long the container ran, by the compute node's clock (DESIGN §5's run phase).
    run_seconds: float = 0.0


class ResultsAccepted(_Message, tag="ResultsAccepted"):
    shard: int = 0


class ResultsRejected(_Message, tag="ResultsRejected"):
    shard: int = 0
    reason: str = ""


class ResultsPublished(_Message, tag="ResultsPublished"):
    shard: int
    result_id: str
    location: str


class ComputeError(_Message, tag="ComputeError"):
    shard: int = 0
    message: str = ""


class Cancelled(_Message, tag="Cancelled"):
    reason: str = ""


Message = (
    JobAnnounced
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
)

GOSSIP_TYPES: tuple[type, ...] = (JobAnnounced, BiddingClosed)
DIRECT_TYPES: tuple[type, ...] = (
    Bid,
    BidAccepted,
    BidRejected,
    ResultsProposed,
    ResultsAccepted,
    ResultsRejected,
    ResultsPublished,
    ComputeError,
    Cancelled,
)


class Sender(enum.Enum):
    """Who may send a message type (DESIGN §4's entitlement table)."""

    REQUESTER = "the job's requester"
    BIDDER = "the bidding node itself"
    ACCEPTED = "a node whose bid on that shard was accepted"


ENTITLED: dict[type, Sender] = {
    JobAnnounced: Sender.REQUESTER,
    BiddingClosed: Sender.REQUESTER,
    BidAccepted: Sender.REQUESTER,
    BidRejected: Sender.REQUESTER,
    ResultsAccepted: Sender.REQUESTER,
    ResultsRejected: Sender.REQUESTER,
    Cancelled: Sender.REQUESTER,
    Bid: Sender.BIDDER,
    ResultsProposed: Sender.ACCEPTED,
    ResultsPublished: Sender.ACCEPTED,
    ComputeError: Sender.ACCEPTED,
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
    """The reply to every direct message: accepted, or why not."""

    ok: bool
    error: str = ""


_ack_decoder = msgspec.msgpack.Decoder(Ack)


def encode_ack(ack: Ack) -> bytes:
    return _encoder.encode(ack)


def decode_ack(data: bytes) -> Ack:
    try:
        return _ack_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MessageError(f"bad acknowledgement: {exc}") from None
