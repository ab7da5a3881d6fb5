"""The node view's credibility records (:mod:`tui.credibility`) from ``GET /api/v1/node``
answers: what a node's requester reports is shown as it reports it, worst first and
cut to :data:`~tui.credibility.MAX_ROWS`, and an older node's answer (no record) is
said to be one."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.tui_fake_locks import CREDIBILITY, N0, N1, N2
from tui import credibility as cr

NAMES = {N0: "node-0", N1: "node-1", N2: "node-2"}


def _view(document: dict[str, Any], limit: int = cr.MAX_ROWS) -> cr.CredibilityView:
    return cr.credibility_view(cr.DECODER.decode(json.dumps(document)), NAMES, limit)


def _peer(i: int) -> str:
    return f"12D3KooW{i:044d}"


def test_the_requesters_record_as_reported() -> None:
    view = _view({"id": N0, "peers": {"topic": 2}, **CREDIBILITY})  # other fields skipped
    assert (view.known, view.trusted, view.excluded, view.agreed, view.caught) == (3, 2, 1, 12, 2)
    assert (view.escalations, view.spot_checks, view.extra_runs) == (1, 2, 4)
    assert [n.name for n in view.nodes] == ["node-2", "node-1", "node-0"]
    worst = view.nodes[0]
    assert (
        worst.excluded and worst.excluded_until == CREDIBILITY["credibility"][N2]["excluded_until"]
    )
    assert "excluded" in worst.search_text and N2.lower() in worst.search_text
    assert view.reported and view.counted == 3
    assert cr.summary_text(view).splitlines() == [
        "as requester: 3 node(s) known · 2 trusted · 1 excluded · their proposals: 12 agreed,"
        " 2 caught",
        "escalations 1 · spot checks 2 · extra runs 4 (on fresh nodes)",
    ]
    assert cr.tab_label(view) == "Credibility · caught 2, excluded 1"


def test_worst_first_and_at_most_max_rows() -> None:
    records = {
        _peer(i): {"agreed": i, "caught": i % 3, "excluded_until": 5.0 if i == 4 else None}
        for i in range(25)
    }
    view = _view({"credibility": records}, limit=cr.MAX_ROWS)
    assert view.counted == 25 and len(view.nodes) == cr.MAX_ROWS
    caught = [n.caught for n in view.nodes]
    assert caught == sorted(caught, reverse=True) and caught[0] == 2
    ones = [n for n in view.nodes if n.caught == 1]
    assert ones[0].excluded and ones[0].agreed == 4  # excluded first among equals
    assert [n.agreed for n in ones[1:]] == sorted(n.agreed for n in ones[1:])
    assert view.nodes[0].name == _peer(2)[-6:]  # not in the devstack: its peer id's tail
    assert len(_view({"credibility": records}, limit=0).nodes) == 0


def test_an_older_node_reports_no_record() -> None:
    view = _view({"id": N0, "requester": {"open_jobs": 0, "reruns": 0}})
    assert not view.reported and view.nodes == () and view.counted == 0
    assert view.escalations is None and view.caught is None
    assert "does not report one" in cr.summary_text(view)
    assert cr.tab_label(view) == cr.tab_label(None) == "Credibility"
    # nothing caught yet: the plain label
    counts = dict.fromkeys(("known", "trusted", "excluded", "agreed", "caught"), 0)
    quiet = _view({"requester": {"credibility": counts}})
    assert quiet.reported and cr.tab_label(quiet) == "Credibility"
