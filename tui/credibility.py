"""A requester's record of the nodes that ran its jobs, as the node view shows it.

This module owns what the TUI reads of ``GET /api/v1/node`` for it
(:class:`CredibilityDocument`, decoded straight into the few fields it reads; the
node's :class:`~node.requester.RequesterStatistics` and its per-node
``credibility``), the records made of that (:class:`CredibilityView`, with one
:class:`NodeCredibility` per node the requester has counted in a verdict, worst
first) and their text (:func:`summary_text`, :func:`tab_label`).

The figures are the node's own (README, verification): a proposal ``agreed`` with the
result the requester accepted, or was ``caught`` differing from it; a node caught
lately is ``excluded`` (offered no work by this requester) until ``excluded_until``
(wall clock); ``escalations``, ``spot_checks`` and ``extra_runs`` count the runs the
requester added on fresh nodes. A figure the node does not report (a node older than
the record) is ``None``. Nothing here imports Textual or does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec

from tui.format import short_id

#: Nodes the view lists, worst first: the ones to look at, not the whole network.
MAX_ROWS = 10


class _Statistics(msgspec.Struct, gc=False):
    known: int
    trusted: int
    excluded: int
    agreed: int
    caught: int


class _Requester(msgspec.Struct, gc=False):
    escalations: int | None = None
    spot_checks: int | None = None
    extra_runs: int | None = None
    credibility: _Statistics | None = None


class _Record(msgspec.Struct, gc=False):
    agreed: int
    caught: int
    excluded_until: float | None = None


class CredibilityDocument(msgspec.Struct, gc=False):
    """What the node view reads of ``GET /api/v1/node``."""

    requester: _Requester | None = None
    credibility: dict[str, _Record] | None = None


DECODER = msgspec.json.Decoder(CredibilityDocument)


@dataclass(frozen=True, slots=True)
class NodeCredibility:
    """One node as the requester counted it."""

    peer_id: str
    name: str  # its devstack name, or its peer id's tail
    agreed: int
    caught: int
    excluded_until: float | None  # wall clock; None unless excluded now

    @property
    def excluded(self) -> bool:
        return self.excluded_until is not None

    @property
    def search_text(self) -> str:
        return f"{self.name} {self.peer_id}{' excluded' if self.excluded else ''}".lower()


@dataclass(frozen=True, slots=True)
class CredibilityView:
    """The requester's summary and its ``nodes``, worst first (at most
    :data:`MAX_ROWS` of the ``counted`` nodes it has a record of)."""

    known: int | None = None
    trusted: int | None = None
    excluded: int | None = None
    agreed: int | None = None
    caught: int | None = None
    escalations: int | None = None
    spot_checks: int | None = None
    extra_runs: int | None = None
    nodes: tuple[NodeCredibility, ...] = ()
    counted: int = 0

    @property
    def reported(self) -> bool:
        """Whether the node reports a record at all (older nodes do not)."""
        return self.known is not None


def worst_first(nodes: Sequence[NodeCredibility]) -> list[NodeCredibility]:
    """Most caught first; then the excluded, the fewest agreements, the name."""
    return sorted(nodes, key=lambda n: (-n.caught, not n.excluded, n.agreed, n.name))


def credibility_view(
    document: CredibilityDocument,
    names: Mapping[str, str] | None = None,
    limit: int = MAX_ROWS,
) -> CredibilityView:
    """The view of one ``GET /api/v1/node`` answer; ``names`` maps peer ids to the
    names shown."""
    requester = document.requester or _Requester()
    stats = requester.credibility
    nodes = [
        NodeCredibility(
            peer_id=peer,
            name=(names or {}).get(peer) or short_id(peer),
            agreed=record.agreed,
            caught=record.caught,
            excluded_until=record.excluded_until,
        )
        for peer, record in (document.credibility or {}).items()
    ]
    return CredibilityView(
        known=None if stats is None else stats.known,
        trusted=None if stats is None else stats.trusted,
        excluded=None if stats is None else stats.excluded,
        agreed=None if stats is None else stats.agreed,
        caught=None if stats is None else stats.caught,
        escalations=requester.escalations,
        spot_checks=requester.spot_checks,
        extra_runs=requester.extra_runs,
        nodes=tuple(worst_first(nodes)[: max(0, limit)]),
        counted=len(nodes),
    )


def _n(value: int | None) -> str:
    return "?" if value is None else str(value)


def summary_text(view: CredibilityView) -> str:
    """Two lines: the nodes the requester knows and what their proposals did; the runs
    it added on fresh nodes."""
    if not view.reported:
        return "no credibility record: the node does not report one (it predates it)"
    return (
        f"as requester: {_n(view.known)} node(s) known · {_n(view.trusted)} trusted"
        f" · {_n(view.excluded)} excluded · their proposals: {_n(view.agreed)} agreed,"
        f" {_n(view.caught)} caught\n"
        f"escalations {_n(view.escalations)} · spot checks {_n(view.spot_checks)}"
        f" · extra runs {_n(view.extra_runs)} (on fresh nodes)"
    )


def tab_label(view: CredibilityView | None) -> str:
    """The tab's title: what was caught and who is excluded, when anything was."""
    if view is None or not view.caught:
        return "Credibility"
    return f"Credibility · caught {view.caught}, excluded {_n(view.excluded)}"
