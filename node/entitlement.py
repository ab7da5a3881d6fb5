"""Who may send what (README, dispatch): one pure check for gossip and direct messages.

The sender is the authenticated peer: the gossip signer (strict signing) or the
remote peer of the secure channel. A message that fails is dropped and counted.
"""

from __future__ import annotations

from collections.abc import Collection

from node import messages
from node.messages import Message, Sender


def check_sender(
    message: Message,
    sender: str,
    *,
    requester: str | None,
    accepted: Collection[str] = (),
    bidders: Collection[str] | None = None,
    full: Collection[str] = (),
) -> str | None:
    """None if ``sender`` may send ``message``, else the reason it may not.

    ``requester`` is the job's requester as this node knows it (None when the
    job is unknown here); ``accepted`` the nodes whose bid on the message's
    shard the requester accepted; ``bidders`` the nodes that may bid on (or
    decline) the shard: those it was offered to, or None once it was gossiped (or
    when the job is not open here, which its handler answers); ``full`` the nodes
    that declined an offer of this node's as full and have not said since that a
    slot is free.
    """
    rule = messages.ENTITLED[type(message)]
    if rule is Sender.OFFERED:
        return None if sender in full else "not_offered"
    if rule is Sender.BIDDER:
        return None if bidders is None or sender in bidders else "not_offered"
    if isinstance(message, messages.JobAnnounced | messages.JobOffered):
        claimed = message.job.requester
        if message.job.id != message.job_id:
            return "job_id_mismatch"
        if requester is not None and requester != claimed:
            return "not_requester"  # someone else's job, re-sent as its own
        return None if sender == claimed else "not_requester"
    if requester is None and isinstance(message, messages.BiddingClosed):
        # A close can overtake its job's announce on another gossip path: the signer
        # must be the requester it names, and the announce must name it too.
        return None if sender == message.requester else "not_requester"
    if requester is None:
        return "unknown_job"
    if rule is Sender.REQUESTER:
        return None if sender == requester else "not_requester"
    return None if sender in accepted else "not_accepted"
