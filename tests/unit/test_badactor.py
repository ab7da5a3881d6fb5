"""How a bad actor forges (``node/badactor.py``): colluders forge the same shards the
same way, a lone actor its own way, and ``rate`` forges about that share of the
results, the same shards on every run; the options that set it are refused where
they cannot apply."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack import cluster
from devstack.errors import ClusterError
from node.argtypes import forgery_refused, share
from node.badactor import FORGED_LINE, Forgery, forge_results

pytestmark = pytest.mark.timeout(60)

ids = st.text("abcdef0123456789", min_size=4, max_size=12)
rates = st.floats(0.01, 1.0)


@given(ids, ids, ids, st.integers(0, 50), rates)
def test_colluders_forge_the_same_shards_the_same_way(
    one: str, other: str, job: str, shard: int, rate: float
) -> None:
    forgery = Forgery(collude=True, rate=rate)
    assert forgery.forges(one, job, shard) == forgery.forges(other, job, shard)
    assert forgery.line(one) == forgery.line(other) == FORGED_LINE


@given(ids, ids, st.integers(0, 50), rates)
def test_a_choice_is_the_same_on_every_run(node: str, job: str, shard: int, rate: float) -> None:
    for collude in (True, False):
        forgery = Forgery(collude=collude, rate=rate)
        assert forgery.forges(node, job, shard) == Forgery(collude, rate).forges(node, job, shard)


@given(ids, ids)
def test_a_lone_actor_forges_its_own_way(one: str, other: str) -> None:
    alone = Forgery(collude=False)
    assert (alone.line(one) == alone.line(other)) == (one == other)
    assert alone.line(one) != FORGED_LINE


@pytest.mark.parametrize("collude", [True, False])
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_a_rate_forges_about_that_share(collude: bool, rate: float) -> None:
    forgery = Forgery(collude=collude, rate=rate)
    forged = sum(forgery.forges("12D3KooWnode", f"job-{i}", 0) for i in range(4000))
    assert abs(forged / 4000 - rate) < 0.04  # sha-256 spreads 4000 keys that evenly


def test_rate_one_forges_everything() -> None:
    assert all(Forgery().forges("n", f"job-{i}", i % 3) for i in range(500))


@pytest.mark.parametrize("rate", [0.0, -0.5, 1.01])
def test_a_rate_outside_zero_to_one_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be in"):
        Forgery(rate=rate)


def test_forging_appends_the_line(tmp_path: Path) -> None:
    (tmp_path / "stdout").write_bytes(b"honest\n")
    forge_results(tmp_path, b"forged by bad actor X\n")
    assert (tmp_path / "stdout").read_bytes() == b"honest\nforged by bad actor X\n"


@pytest.mark.parametrize("text", ["0", "1.5", "-1", "x", "nan"])
def test_a_share_outside_zero_to_one_is_refused_by_name(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        share(text)
    assert share("0.25") == 0.25 and share("1") == 1.0


def test_forging_options_without_a_bad_actor_are_refused() -> None:
    assert forgery_refused(1, False, 0.5) is None
    assert forgery_refused(0, True, 1.0) is None
    assert "give --bad-actor" in (forgery_refused(0, False, 1.0) or "")
    assert "give --bad-actor" in (forgery_refused(0, True, 0.5) or "")


def test_up_refuses_no_collude_without_bad_actors_before_starting_anything(
    tmp_path: Path,
) -> None:
    options = cluster.UpOptions(nodes=3, state_dir=tmp_path, collude=False)
    with pytest.raises(ClusterError, match="--no-collude"):
        cluster.up(options, say=lambda _: None)
    assert not (tmp_path / "cluster.json").exists()
