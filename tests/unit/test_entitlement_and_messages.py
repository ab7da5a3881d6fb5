"""The wire protocol's rules without a network: who may send what (README, dispatch),
message encoding, size limits, and job-spec decoding errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, get_args

import msgspec
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from node import messages
from node.entitlement import check_sender
from node.messages import (
    DIRECT_TYPES,
    ENTITLED,
    GOSSIP_TYPES,
    MAX_MESSAGE_BYTES,
    Ack,
    Message,
    MessageError,
    Sender,
    decode,
    decode_ack,
    encode,
    encode_ack,
)
from node.models import (
    MAX_CPU,
    MAX_EXTRA_RUNS,
    MAX_MARGIN,
    MAX_MEMORY,
    MAX_SHARDS,
    Deal,
    Job,
    JobSpec,
    Resources,
    SpecError,
    decode_spec,
    validate_spec,
)

pytestmark = pytest.mark.timeout(120)

REQ, ACC, OTHER = "QmRequester", "QmAccepted", "QmOther"
JOB_ID = "job-1"
SPEC = JobSpec(image="busybox", command=["echo", "hello"])
JOB = Job(id=JOB_ID, requester=REQ, spec=SPEC, created_at=1000.0)

# One message of every type, as the job's requester/bidder/compute node would send it.
SAMPLES: dict[type, Message] = {
    messages.JobOffered: messages.JobOffered(job_id=JOB_ID, job=JOB),
    messages.OfferDeclined: messages.OfferDeclined(job_id=JOB_ID, reason="full"),
    messages.JobAnnounced: messages.JobAnnounced(job_id=JOB_ID, job=JOB),
    messages.BiddingClosed: messages.BiddingClosed(job_id=JOB_ID, requester=REQ),
    messages.Bid: messages.Bid(job_id=JOB_ID),
    messages.BidAccepted: messages.BidAccepted(job_id=JOB_ID),
    messages.BidRejected: messages.BidRejected(job_id=JOB_ID, reason="enough bids"),
    messages.ResultsProposed: messages.ResultsProposed(
        job_id=JOB_ID, shard=0, sealed_result=b"r1", exit_code=0
    ),
    messages.ResultsAccepted: messages.ResultsAccepted(job_id=JOB_ID),
    messages.ResultsRejected: messages.ResultsRejected(job_id=JOB_ID, reason="outvoted"),
    messages.ResultsPublished: messages.ResultsPublished(
        job_id=JOB_ID, shard=0, result_id="r1", location="http://127.0.0.1:1/r1"
    ),
    messages.ComputeError: messages.ComputeError(job_id=JOB_ID, message="boom"),
    messages.Cancelled: messages.Cancelled(job_id=JOB_ID, reason="stop"),
    messages.ExecutionHeartbeat: messages.ExecutionHeartbeat(job_id=JOB_ID),
    messages.JobOutput: messages.JobOutput(
        job_id=JOB_ID, lines=[messages.OutputLine("stdout", 1.0, "hi")]
    ),
    messages.ExecutionLost: messages.ExecutionLost(job_id=JOB_ID, reason="restarted"),
    messages.SlotFreed: messages.SlotFreed(job_id=JOB_ID, slots=1),
    messages.Status: messages.Status(job_id=JOB_ID),
}
# A presence beacon, where the node has one (not in the entitlement table (README, dispatch)).
NODE_ALIVE: type | None = getattr(messages, "NodeAlive", None)
if NODE_ALIVE is not None:
    SAMPLES[NODE_ALIVE] = NODE_ALIVE(api="http://127.0.0.1:1")

# the entitlement table (README, dispatch), written out independently of node/messages.py.
DESIGN_TABLE: dict[str, set[type]] = {
    "requester": {
        messages.JobOffered,
        messages.JobAnnounced,
        messages.BiddingClosed,
        messages.BidAccepted,
        messages.BidRejected,
        messages.ResultsAccepted,
        messages.ResultsRejected,
        messages.Cancelled,
        messages.Status,
    },
    "bidder": {messages.Bid, messages.OfferDeclined},
    "accepted": {
        messages.ResultsProposed,
        messages.ResultsPublished,
        messages.ComputeError,
        messages.ExecutionHeartbeat,
        messages.JobOutput,
        messages.ExecutionLost,
    },
    "declined full": {messages.SlotFreed},
}
if NODE_ALIVE is not None:
    DESIGN_TABLE["anyone"] = {NODE_ALIVE}
RULE_OF = {t: rule for rule, types in DESIGN_TABLE.items() for t in types}
ALL_TYPES = set(get_args(Message))


# -- the entitlement table -------------------------------------------------------


def test_every_message_type_has_a_rule_and_one_channel() -> None:
    assert set(SAMPLES) == ALL_TYPES == set(ENTITLED) == set(RULE_OF)
    assert set(GOSSIP_TYPES) | set(DIRECT_TYPES) == ALL_TYPES
    assert not set(GOSSIP_TYPES) & set(DIRECT_TYPES)
    gossip = {messages.JobAnnounced, messages.BiddingClosed}
    assert set(GOSSIP_TYPES) == gossip | ({NODE_ALIVE} if NODE_ALIVE else set())


def test_entitled_matches_the_design_table() -> None:
    names = {
        Sender.REQUESTER: "requester",
        Sender.BIDDER: "bidder",
        Sender.ACCEPTED: "accepted",
        Sender.OFFERED: "declined full",
    }
    if hasattr(Sender, "ANYONE"):
        names[Sender.ANYONE] = "anyone"
    assert {t: names[s] for t, s in ENTITLED.items()} == RULE_OF


def expected(message_type: type, sender_kind: str) -> str | None:
    """What check_sender must answer, from the README's entitlement table alone."""
    rule = RULE_OF[message_type]
    if rule == "declined full":
        return "not_offered"  # no node here declined an offer as full
    if rule in ("anyone", "bidder"):
        return None  # gossiped (no offer list): anyone may bid; NodeAlive is about oneself
    if message_type in (messages.JobAnnounced, messages.JobOffered):
        # A new job is unknown everywhere: the sender must be the requester it names.
        return None if sender_kind in ("requester", "unknown job, requester") else "not_requester"
    if message_type is messages.BiddingClosed and sender_kind.startswith("unknown job"):
        # It may overtake its announce: the signer must be the requester it names.
        return None if sender_kind == "unknown job, requester" else "not_requester"
    if sender_kind.startswith("unknown job"):
        return "unknown_job"
    if rule == "requester":
        return None if sender_kind == "requester" else "not_requester"
    return None if sender_kind == "accepted node" else "not_accepted"


SENDER_KINDS = {
    # kind: (sender, the requester this node knows, accepted nodes)
    "requester": (REQ, REQ, {ACC}),
    "accepted node": (ACC, REQ, {ACC}),
    "other node": (OTHER, REQ, {ACC}),
    "unknown job, requester": (REQ, None, set()),
    "unknown job, other node": (OTHER, None, set()),
}


@pytest.mark.parametrize("sender_kind", list(SENDER_KINDS))
@pytest.mark.parametrize("message_type", list(SAMPLES), ids=lambda t: t.__name__)
def test_check_sender_table(message_type: type, sender_kind: str) -> None:
    sender, requester, accepted = SENDER_KINDS[sender_kind]
    message = SAMPLES[message_type]
    got = check_sender(message, sender, requester=requester, accepted=accepted)
    assert got == expected(message_type, sender_kind)


@pytest.mark.parametrize("message_type", sorted(DESIGN_TABLE["accepted"], key=lambda t: t.__name__))
def test_requester_that_ran_a_shard_may_report_on_it(message_type: type) -> None:
    message = SAMPLES[message_type]
    assert check_sender(message, REQ, requester=REQ, accepted={REQ, ACC}) is None


def test_announce_must_carry_its_own_job_id() -> None:
    forged = messages.JobAnnounced(job_id="another-job", job=JOB)
    assert check_sender(forged, REQ, requester=REQ) == "job_id_mismatch"


@pytest.mark.parametrize("message_type", [messages.JobAnnounced, messages.JobOffered])
def test_a_job_may_come_only_from_the_requester_it_names(message_type: type) -> None:
    message = SAMPLES[message_type]
    assert check_sender(message, REQ, requester=None) is None  # new here
    assert check_sender(message, REQ, requester=REQ) is None  # a later round
    assert check_sender(message, OTHER, requester=None) == "not_requester"
    # A job this node knows from another requester, re-sent as the sender's own.
    assert check_sender(message, REQ, requester=OTHER) == "not_requester"


def test_an_offer_must_carry_its_own_job_id() -> None:
    forged = messages.JobOffered(job_id="another-job", job=JOB)
    assert check_sender(forged, REQ, requester=None) == "job_id_mismatch"


@pytest.mark.parametrize("message_type", [messages.Bid, messages.OfferDeclined])
def test_only_offered_nodes_answer_a_shard_that_was_not_gossiped(message_type: type) -> None:
    message = SAMPLES[message_type]
    assert check_sender(message, ACC, requester=REQ, bidders={ACC}) is None
    assert check_sender(message, OTHER, requester=REQ, bidders={ACC}) == "not_offered"
    assert check_sender(message, OTHER, requester=REQ, bidders=frozenset()) == "not_offered"
    assert check_sender(message, OTHER, requester=REQ, bidders=None) is None  # gossiped


def test_only_a_node_that_declined_as_full_says_a_slot_came_free() -> None:
    freed = SAMPLES[messages.SlotFreed]
    assert check_sender(freed, ACC, requester=None, full={ACC}) is None
    assert check_sender(freed, OTHER, requester=None, full={ACC}) == "not_offered"
    assert check_sender(freed, REQ, requester=REQ, full=frozenset()) == "not_offered"


def test_cancelled_names_its_shards_or_none() -> None:
    some = messages.Cancelled(job_id=JOB_ID, reason="re-run elsewhere", shards=[0, 2])
    assert decode(encode(some)) == some
    assert decode(encode(SAMPLES[messages.Cancelled])).shards is None


peers = st.sampled_from([REQ, ACC, OTHER, "QmX", ""])


@given(
    message_type=st.sampled_from(sorted(ALL_TYPES, key=lambda t: t.__name__)),
    sender=peers,
    requester=st.none() | peers,
    accepted=st.frozensets(peers, max_size=3),
    bidders=st.none() | st.frozensets(peers, max_size=3),
)
def test_check_sender_property(
    message_type: type,
    sender: str,
    requester: str | None,
    accepted: frozenset[str],
    bidders: frozenset[str] | None,
) -> None:
    message = SAMPLES[message_type]
    got = check_sender(message, sender, requester=requester, accepted=accepted, bidders=bidders)
    rule = RULE_OF[message_type]
    if rule == "anyone":
        assert got is None
    elif rule == "declined full":
        assert got == "not_offered"
    elif rule == "bidder":
        assert (got is None) == (bidders is None or sender in bidders)
    elif message_type in (messages.JobAnnounced, messages.JobOffered):
        assert (got is None) == (sender == REQ and requester in (None, REQ))
    elif message_type is messages.BiddingClosed and requester is None:
        assert (got is None) == (sender == REQ)  # the requester the sample names
    elif requester is None:
        assert got == "unknown_job"
    elif rule == "requester":
        assert (got is None) == (sender == requester)
    else:
        assert (got is None) == (sender in accepted)


# -- encode / decode -------------------------------------------------------------

text = st.text(max_size=24)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
floats = st.floats(allow_nan=False)
count = st.integers(min_value=-(2**31), max_value=2**31)

specs = st.builds(
    JobSpec,
    image=text,
    command=st.lists(text, max_size=4),
    entrypoint=st.none() | st.lists(text, max_size=3),
    engine=text,
    env=st.dictionaries(text, text, max_size=3),
    timeout=floats,
    resources=st.builds(
        Resources,
        cpu=st.floats(min_value=0, max_value=MAX_CPU, allow_nan=False),
        memory=st.integers(min_value=0, max_value=MAX_MEMORY),
    ),
    deal=st.builds(
        Deal,
        concurrency=count,
        confidence=count,
        min_bids=count,
        margin=count,
        max_extra_runs=count,
        spot_check=st.floats(min_value=0, max_value=1),
        check_newcomers=st.booleans(),
        credibility=st.booleans(),
    ),
    verifier=text,
    publisher=text,
    network=st.booleans(),
)
jobs = st.builds(
    Job,
    id=text,
    requester=text,
    spec=specs,
    created_at=floats,
    shards=st.integers(min_value=1, max_value=MAX_SHARDS),
)

message_strategies: dict[type, st.SearchStrategy[Any]] = {
    messages.JobOffered: st.builds(
        messages.JobOffered, job_id=text, job=jobs, shard=int64, window=floats
    ),
    messages.OfferDeclined: st.builds(
        messages.OfferDeclined,
        job_id=text,
        shard=int64,
        reason=st.sampled_from(get_args(messages.DeclineReason)),
        detail=text,
    ),
    messages.JobAnnounced: st.builds(
        messages.JobAnnounced,
        job_id=text,
        job=jobs,
        requester_addrs=st.lists(text, max_size=3),
        round=int64,
        window=floats,
        shards=st.none() | st.lists(int64, max_size=4),
    ),
    messages.BiddingClosed: st.builds(
        messages.BiddingClosed, job_id=text, requester=text, shard=int64
    ),
    messages.Bid: st.builds(messages.Bid, job_id=text, shard=int64),
    messages.BidAccepted: st.builds(messages.BidAccepted, job_id=text, shard=int64),
    messages.BidRejected: st.builds(messages.BidRejected, job_id=text, shard=int64, reason=text),
    messages.ResultsProposed: st.builds(
        messages.ResultsProposed,
        job_id=text,
        shard=int64,
        sealed_result=st.binary(max_size=120),
        exit_code=int64,
        stdout_preview=st.text(max_size=200),
    ),
    messages.ResultsAccepted: st.builds(messages.ResultsAccepted, job_id=text, shard=int64),
    messages.ResultsRejected: st.builds(
        messages.ResultsRejected, job_id=text, shard=int64, reason=text
    ),
    messages.ResultsPublished: st.builds(
        messages.ResultsPublished, job_id=text, shard=int64, result_id=text, location=text
    ),
    messages.ComputeError: st.builds(messages.ComputeError, job_id=text, shard=int64, message=text),
    messages.Cancelled: st.builds(
        messages.Cancelled,
        job_id=text,
        reason=text,
        shards=st.none() | st.lists(int64, max_size=4),
    ),
    messages.ExecutionHeartbeat: st.builds(messages.ExecutionHeartbeat, job_id=text, shard=int64),
    messages.JobOutput: st.builds(
        messages.JobOutput,
        job_id=text,
        shard=int64,
        lines=st.lists(
            st.builds(
                messages.OutputLine,
                st.sampled_from(["stdout", "stderr"]),
                st.floats(allow_nan=False, allow_infinity=False),
                st.text(max_size=50),
            ),
            max_size=5,
        ),
        dropped=st.integers(0, 2**40),
    ),
    messages.ExecutionLost: st.builds(
        messages.ExecutionLost, job_id=text, shard=int64, reason=text
    ),
    messages.SlotFreed: st.builds(messages.SlotFreed, job_id=text, slots=int64),
    messages.Status: st.builds(messages.Status, job_id=text, shard=int64),
}
if NODE_ALIVE is not None:
    message_strategies[NODE_ALIVE] = st.builds(NODE_ALIVE, api=text)
any_message = st.one_of(*message_strategies.values())


def test_strategies_cover_every_message_type() -> None:
    assert set(message_strategies) == ALL_TYPES


@given(any_message)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_encode_decode_round_trip(message: Message) -> None:
    data = encode(message)
    assume(len(data) <= MAX_MESSAGE_BYTES)
    decoded = decode(data)
    assert type(decoded) is type(message)
    assert decoded == message
    assert encode(decoded) == data


@given(st.booleans(), text, st.none() | message_strategies[messages.Bid])
def test_ack_round_trip(ok: bool, error: str, answer: messages.Bid | None) -> None:
    assert decode_ack(encode_ack(Ack(ok, error, answer))) == Ack(ok, error, answer)


def test_an_ack_answers_only_with_a_bid_a_decline_or_a_status() -> None:
    decline = messages.OfferDeclined(job_id=JOB_ID, reason="no_image", detail="no busybox")
    assert decode_ack(encode_ack(Ack(True, answer=decline))).answer == decline
    report = messages.StatusReport(job_id=JOB_ID, shard=2, state="proposed")
    assert decode_ack(encode_ack(Ack(True, answer=report))).answer == report
    bad_state = msgspec.msgpack.encode(
        {"ok": True, "answer": {"type": "StatusReport", "job_id": "j", "state": "dreaming"}}
    )
    with pytest.raises(MessageError):
        decode_ack(bad_state)
    forged = msgspec.msgpack.encode({"ok": True, "answer": SAMPLES[messages.BidAccepted]})
    with pytest.raises(MessageError):
        decode_ack(forged)
    unknown_reason = msgspec.msgpack.encode(
        {"ok": True, "answer": {"type": "OfferDeclined", "job_id": "j", "reason": "bored"}}
    )
    with pytest.raises(MessageError):
        decode_ack(unknown_reason)


def decodes_or_refuses(
    data: bytes, decoder: Callable[[bytes], Any], types: tuple[type, ...]
) -> None:
    """``decoder(data)`` returns one of ``types`` or raises MessageError, nothing else."""
    try:
        result = decoder(data)
    except MessageError as exc:
        assert str(exc)
    else:
        assert isinstance(result, types)


@given(st.binary(max_size=4096))
@settings(max_examples=500)
@example(b"")
@example(b"\xc1")
@example(b"\x80")  # an empty map: no type tag
@example(b"\x81\xa4type\xa3Bid")  # a Bid without its job_id
@example(b"\x82\xa4type\xa3Bid\xa6job_id\x05")  # job_id of the wrong type
@example(b"\x82\xa4type\xa4Nope\xa6job_id\xa1x")  # an unknown tag
@example(b"\x91" * 10_000)  # deeply nested arrays
@example(b"\x82\xa4type\xa3Bid\xa6job_id\xa1\x80")  # a string that is not UTF-8
@example(b"\x82\xa2ok\xc2\xa5error\xa1\x80")  # an Ack whose error is not UTF-8
def test_decode_random_bytes_only_raises_message_error(data: bytes) -> None:
    decodes_or_refuses(data, decode, tuple(ALL_TYPES))
    decodes_or_refuses(data, decode_ack, (Ack,))


msgpack_values = st.recursive(
    st.none() | st.booleans() | int64 | floats | st.text(max_size=10) | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=12,
)
FIELD_NAMES = sorted(
    {f for t in ALL_TYPES for f in t.__struct_fields__} | {"type", "id", "spec", "requester"}
)


@given(
    tag=st.sampled_from([t.__struct_config__.tag for t in ALL_TYPES] + ["Nope", 1, None]),
    fields=st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), msgpack_values),
)
@settings(max_examples=500)
def test_decode_plausible_garbage_only_raises_message_error(tag: Any, fields: dict) -> None:
    """Well-formed msgpack maps with a real type tag and random fields."""
    data = msgspec.msgpack.encode({**fields, "type": tag})
    decodes_or_refuses(data, decode, tuple(ALL_TYPES))


@given(any_message, st.data())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_decode_damaged_messages_only_raises_message_error(message: Message, data: Any) -> None:
    """A valid encoding, truncated or with a byte changed."""
    raw = bytearray(encode(message))
    assume(0 < len(raw) <= MAX_MESSAGE_BYTES)
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="keep")]
    else:
        i = data.draw(st.integers(0, len(raw) - 1), label="at")
        raw[i] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]), label="byte")
    decodes_or_refuses(bytes(raw), decode, tuple(ALL_TYPES))


# -- size limits -----------------------------------------------------------------


def proposal_of_size(size: int) -> tuple[messages.ResultsProposed, bytes]:
    """A ResultsProposed whose encoding is exactly ``size`` bytes (size > 70 KiB)."""
    probe = 70_000  # a str32 header, as the final preview will have

    def build(n: int) -> messages.ResultsProposed:
        return messages.ResultsProposed(
            job_id=JOB_ID, shard=0, sealed_result=b"r", exit_code=0, stdout_preview="x" * n
        )

    overhead = len(encode(build(probe))) - probe
    message = build(size - overhead)
    data = encode(message)
    assert len(data) == size
    return message, data


def test_message_at_the_limit_decodes() -> None:
    message, data = proposal_of_size(MAX_MESSAGE_BYTES)
    assert decode(data) == message


def test_oversize_message_is_refused() -> None:
    _, data = proposal_of_size(MAX_MESSAGE_BYTES + 1)
    with pytest.raises(MessageError, match="exceeds"):
        decode(data)
    with pytest.raises(MessageError, match="exceeds"):
        decode(b"\x00" * (10 * MAX_MESSAGE_BYTES))


def test_a_spec_too_big_for_an_announce_is_refused_naming_its_largest_part() -> None:
    with pytest.raises(SpecError) as info:
        validate_spec(JobSpec(image="busybox", command=["echo", *["x" * 8000] * 40]))
    assert info.value.field == "command"
    spec = validate_spec(JobSpec(image="busybox", command=["echo", *["x" * 8000] * 7]))
    job = Job(id=JOB_ID, requester=REQ, spec=spec, created_at=1000.0)
    decode(encode(messages.JobAnnounced(job_id=JOB_ID, job=job)))


# (the largest value a spec may hold, one past it, the field named): the spec's bounds
# are what keeps every value within what the wire format carries.
WIRE_EDGES = [
    ({"resources": {"memory": MAX_MEMORY}}, {"resources": {"memory": MAX_MEMORY + 1}}, "memory"),
    ({"resources": {"cpu": MAX_CPU}}, {"resources": {"cpu": MAX_CPU * 2}}, "cpu"),
    ({"deal": {"min_bids": 1 << 31}}, {"deal": {"min_bids": (1 << 31) + 1}}, "min_bids"),
]


@pytest.mark.parametrize(("largest", "over", "field"), WIRE_EDGES, ids=[e[2] for e in WIRE_EDGES])
def test_the_largest_spec_accepted_fits_the_wire_and_one_more_is_refused(
    largest: dict[str, Any], over: dict[str, Any], field: str
) -> None:
    base = {"image": "busybox", "command": ["true"]}
    spec = decode_spec(json.dumps({**base, **largest}).encode())
    job = Job(id=JOB_ID, requester=REQ, spec=spec, created_at=1000.0)
    announce = messages.JobAnnounced(job_id=JOB_ID, job=job)
    assert decode(encode(announce)) == announce
    with pytest.raises(SpecError) as info:
        decode_spec(json.dumps({**base, **over}).encode())
    assert info.value.field.endswith(f".{field}"), info.value


# -- job specs -------------------------------------------------------------------

GOOD = {"image": "busybox", "command": ["echo", "hello"]}

BAD_SPECS = [
    ("unknown engine", {**GOOD, "engine": "wasm"}, "engine"),
    ("empty image", {**GOOD, "image": ""}, "image"),
    ("blank image", {**GOOD, "image": "   "}, "image"),
    ("no command", {"image": "busybox"}, "command"),
    ("empty command and entrypoint", {**GOOD, "command": [], "entrypoint": []}, "command"),
    ("too many args", {**GOOD, "command": ["x"] * 257}, "command"),
    ("arg too long", {**GOOD, "command": ["x" * 8193]}, "command"),
    ("command not a list", {**GOOD, "command": "echo hello"}, "command"),
    ("bad env name", {**GOOD, "env": {"1ABC": "x"}}, "env.1ABC"),
    ("env name with a newline", {**GOOD, "env": {"A\n": "x"}}, "env.A\n"),
    ("env name with =", {**GOOD, "env": {"A=B": "x"}}, "env.A=B"),
    ("zero timeout", {**GOOD, "timeout": 0}, "timeout"),
    ("timeout too long", {**GOOD, "timeout": 1e9}, "timeout"),
    ("timeout not a number", {**GOOD, "timeout": "soon"}, "timeout"),
    ("negative cpu", {**GOOD, "resources": {"cpu": -1}}, "resources.cpu"),
    ("negative memory", {**GOOD, "resources": {"memory": -1}}, "resources.memory"),
    ("zero concurrency", {**GOOD, "deal": {"concurrency": 0}}, "deal.concurrency"),
    ("negative concurrency", {**GOOD, "deal": {"concurrency": -3}}, "deal.concurrency"),
    ("huge concurrency", {**GOOD, "deal": {"concurrency": 10**6}}, "deal.concurrency"),
    ("concurrency not an int", {**GOOD, "deal": {"concurrency": 1.5}}, "deal.concurrency"),
    ("confidence over concurrency", {**GOOD, "deal": {"confidence": 2}}, "deal.confidence"),
    ("negative confidence", {**GOOD, "deal": {"confidence": -1}}, "deal.confidence"),
    ("negative min_bids", {**GOOD, "deal": {"min_bids": -1}}, "deal.min_bids"),
    ("zero margin", {**GOOD, "deal": {"margin": 0}}, "deal.margin"),
    ("negative margin", {**GOOD, "deal": {"margin": -2}}, "deal.margin"),
    ("margin too big", {**GOOD, "deal": {"margin": MAX_MARGIN + 1}}, "deal.margin"),
    ("margin not an int", {**GOOD, "deal": {"margin": 1.5}}, "deal.margin"),
    ("negative max_extra_runs", {**GOOD, "deal": {"max_extra_runs": -1}}, "deal.max_extra_runs"),
    (
        "max_extra_runs too big",
        {**GOOD, "deal": {"max_extra_runs": MAX_EXTRA_RUNS + 1}},
        "deal.max_extra_runs",
    ),
    ("negative spot_check", {**GOOD, "deal": {"spot_check": -0.1}}, "deal.spot_check"),
    ("spot_check over 1", {**GOOD, "deal": {"spot_check": 1.5}}, "deal.spot_check"),
    ("spot_check not a number", {**GOOD, "deal": {"spot_check": "often"}}, "deal.spot_check"),
    (
        "check_newcomers not a bool",
        {**GOOD, "deal": {"check_newcomers": "yes"}},
        "deal.check_newcomers",
    ),
    ("credibility not a bool", {**GOOD, "deal": {"credibility": 1}}, "deal.credibility"),
    ("unknown verifier", {**GOOD, "verifier": "oracle"}, "verifier"),
    ("unknown publisher", {**GOOD, "publisher": "s3"}, "publisher"),
    ("unknown field", {**GOOD, "colour": "blue"}, "colour"),
    ("deal not an object", {**GOOD, "deal": 3}, "deal"),
    ("network not a bool", {**GOOD, "network": "yes"}, "network"),
]


@pytest.mark.parametrize(("name", "spec", "field"), BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_decode_spec_names_the_field(name: str, spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        decode_spec(json.dumps(spec).encode())
    assert info.value.field == field
    assert info.value.message


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"nope",
        b"[]",
        b"null",
        b"42",
        b'"spec"',
        b"\xff",
        b'{"image": "\xff"}',  # a string that is not UTF-8
        b'{"env": {"\xc3": "x"}}',
        b'{"image": "\\ud800"}',  # a lone surrogate escape
    ],
    ids=repr,
)
def test_decode_spec_body_errors(body: bytes) -> None:
    with pytest.raises(SpecError) as info:
        decode_spec(body)
    assert info.value.field == "body"


def test_a_deal_leaves_its_checks_at_their_defaults() -> None:
    deal = decode_spec(json.dumps(GOOD).encode()).deal
    assert (deal.margin, deal.max_extra_runs, deal.spot_check) == (2, 8, 0.0)
    assert (deal.check_newcomers, deal.credibility) == (False, True)


@pytest.mark.parametrize(
    ("deal", "field"),
    [
        (Deal(margin=0), "deal.margin"),
        (Deal(margin=MAX_MARGIN + 1), "deal.margin"),
        (Deal(max_extra_runs=-1), "deal.max_extra_runs"),
        (Deal(max_extra_runs=MAX_EXTRA_RUNS + 1), "deal.max_extra_runs"),
    ],
    ids=repr,
)
def test_validate_spec_refuses_a_deal_built_in_code_naming_the_field(
    deal: Deal, field: str
) -> None:
    """A spec built in code (not decoded: no schema bounds applied) is still checked."""
    with pytest.raises(SpecError) as info:
        validate_spec(JobSpec(image="busybox", command=["true"], deal=deal))
    assert info.value.field == field
    assert info.value.message


@pytest.mark.parametrize("margin", [1, MAX_MARGIN])
@pytest.mark.parametrize("max_extra_runs", [0, MAX_EXTRA_RUNS])
def test_validate_spec_accepts_the_edges_of_the_deal(margin: int, max_extra_runs: int) -> None:
    deal = Deal(margin=margin, max_extra_runs=max_extra_runs)
    spec = JobSpec(image="busybox", command=["true"], deal=deal)
    assert validate_spec(spec) is spec


def test_decode_spec_concurrency_over_network_size() -> None:
    body = json.dumps({**GOOD, "deal": {"concurrency": 6}}).encode()
    with pytest.raises(SpecError) as info:
        decode_spec(body, network_size=5)
    assert info.value.field == "deal.concurrency"
    assert "5 nodes" in info.value.message
    assert decode_spec(body, network_size=6).deal.concurrency == 6


def test_decode_spec_names_an_unknown_nested_field() -> None:
    with pytest.raises(SpecError) as info:
        decode_spec(json.dumps({**GOOD, "deal": {"bogus": 1}}).encode())
    assert info.value.field == "deal.bogus"


@pytest.mark.parametrize(
    "spec",
    [
        GOOD,
        {"engine": "noop"},
        {"image": "busybox", "entrypoint": ["sh", "-c", "true"]},
        {**GOOD, "env": {"_A1": "x", "B": ""}, "deal": {"concurrency": 3, "confidence": 2}},
        {**GOOD, "timeout": 86400, "resources": {"cpu": 0.5, "memory": 1 << 30}},
        {**GOOD, "deal": {"margin": 1, "max_extra_runs": 0, "spot_check": 0}},
        {
            **GOOD,
            "deal": {
                "concurrency": 3,
                "margin": MAX_MARGIN,
                "max_extra_runs": MAX_EXTRA_RUNS,
                "spot_check": 1,
                "check_newcomers": True,
                "credibility": False,
            },
        },
    ],
)
def test_decode_spec_accepts_good_specs(spec: dict[str, Any]) -> None:
    decoded = decode_spec(json.dumps(spec).encode())
    assert validate_spec(decoded) is decoded
    assert msgspec.json.decode(msgspec.json.encode(decoded), type=JobSpec) == decoded


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)
small_ints = st.integers(min_value=-3, max_value=8)
plausible_deal = st.fixed_dictionaries(
    {},
    optional={
        "concurrency": small_ints,
        "confidence": small_ints,
        "min_bids": small_ints,
        "margin": small_ints | st.integers(MAX_MARGIN - 1, MAX_MARGIN + 1),
        "max_extra_runs": small_ints | st.integers(MAX_EXTRA_RUNS - 1, MAX_EXTRA_RUNS + 1),
        "spot_check": st.floats(-0.5, 1.5, allow_nan=False),
        "check_newcomers": st.booleans(),
        "credibility": st.booleans(),
    },
)
plausible = {
    "image": st.sampled_from(["busybox", "", "  ", "nosuch:1"]) | st.text(max_size=12),
    "command": st.lists(st.text(max_size=12), max_size=3),
    "entrypoint": st.none() | st.lists(st.text(max_size=8), max_size=2),
    "engine": st.sampled_from(["docker", "noop", "wasm", ""]),
    "env": st.dictionaries(st.from_regex(r"[A-Za-z_0-9=\n ]{0,6}", fullmatch=True), st.text()),
    "timeout": st.floats(min_value=-10, max_value=1e6, allow_nan=False) | small_ints,
    "resources": st.fixed_dictionaries(
        {}, optional={"cpu": st.floats(-1, 8, allow_nan=False), "memory": small_ints}
    ),
    "deal": plausible_deal,
    "verifier": st.sampled_from(["noop", "deterministic", ""]),
    "publisher": st.sampled_from(["noop", "ipfs", ""]),
    "network": st.booleans(),
}
json_objects = st.fixed_dictionaries(
    {}, optional={k: v | json_values for k, v in plausible.items()}
) | st.dictionaries(st.sampled_from(sorted(plausible)) | st.text(max_size=8), json_values)


@given(obj=json_objects, network_size=st.none() | st.integers(1, 10))
@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
def test_any_json_object_decodes_or_raises_spec_error(
    obj: dict[str, Any], network_size: int | None
) -> None:
    raw = json.dumps(obj).encode()
    try:
        spec = decode_spec(raw, network_size=network_size)
    except SpecError as exc:
        assert isinstance(exc.field, str) and exc.field
        assert exc.message
        return
    assert isinstance(spec, JobSpec)
    assert validate_spec(spec, network_size) is spec
    if network_size is not None:
        assert 1 <= spec.deal.concurrency <= network_size
    assert 1 <= spec.deal.margin <= MAX_MARGIN
    assert 0 <= spec.deal.max_extra_runs <= MAX_EXTRA_RUNS
    assert 0 <= spec.deal.spot_check <= 1


@given(
    st.binary(max_size=512) | json_objects.map(lambda o: json.dumps(o, ensure_ascii=False).encode())
)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@example(b'{"image": "\xff"}')
@example(b'{"command": ["\xed\xa0\x80"]}')  # an encoded surrogate
def test_any_bytes_decode_or_raise_spec_error(body: bytes) -> None:
    try:
        spec = decode_spec(body)
    except SpecError as exc:
        assert exc.field and exc.message
    else:
        assert validate_spec(spec) is spec


@pytest.mark.parametrize("shards", [0, -1, MAX_SHARDS + 1, 1 << 40])
def test_an_announce_of_an_impossible_number_of_shards_is_malformed(shards: int) -> None:
    """A node never iterates over a forged shard count: decoding refuses it."""
    forged = msgspec.msgpack.decode(encode(messages.JobAnnounced(job_id=JOB_ID, job=JOB)))
    forged["job"]["shards"] = shards
    with pytest.raises(MessageError, match="shards"):
        decode(msgspec.msgpack.encode(forged))
