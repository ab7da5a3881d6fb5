"""``devstack submit``'s options (:mod:`devstack.verbs.submit`): the deal they build,
and the values they refuse by name, as argparse does (exit code 2)."""

from __future__ import annotations

import argparse

import pytest

from devstack.cli import build_parser
from devstack.verbs.submit import build_spec
from node.models import MAX_EXTRA_RUNS, MAX_MARGIN, Deal, JobSpec, validate_spec

pytestmark = pytest.mark.timeout(60)


def parse(*options: str) -> argparse.Namespace:
    return build_parser(["submit"]).parse_args(["submit", *options, "busybox", "--", "true"])


def spec(*options: str) -> JobSpec:
    return validate_spec(build_spec(parse(*options), []))


def test_without_options_the_deal_is_the_default_one() -> None:
    assert spec().deal == Deal()


def test_the_deal_options_reach_the_spec() -> None:
    deal = spec(
        "--concurrency",
        "3",
        "--confidence",
        "2",
        "--margin",
        "1",
        "--max-extra-runs",
        "0",
        "--spot-check",
        "0.25",
        "--check-newcomers",
        "--no-credibility",
    ).deal
    assert deal == Deal(
        concurrency=3,
        confidence=2,
        margin=1,
        max_extra_runs=0,
        spot_check=0.25,
        check_newcomers=True,
        credibility=False,
    )


@pytest.mark.parametrize(
    ("options", "field", "value"),
    [
        (("--margin", str(MAX_MARGIN)), "margin", MAX_MARGIN),
        (("--max-extra-runs", str(MAX_EXTRA_RUNS)), "max_extra_runs", MAX_EXTRA_RUNS),
        (("--spot-check", "0"), "spot_check", 0.0),
        (("--spot-check", "1"), "spot_check", 1.0),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else None,
)
def test_the_edges_are_taken(options: tuple[str, ...], field: str, value: object) -> None:
    assert getattr(spec(*options).deal, field) == value


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--margin", "0"),
        ("--margin", "-1"),
        ("--margin", str(MAX_MARGIN + 1)),
        ("--margin", "two"),
        ("--margin", "1.5"),
        ("--max-extra-runs", "-1"),
        ("--max-extra-runs", str(MAX_EXTRA_RUNS + 1)),
        ("--max-extra-runs", "many"),
        ("--spot-check", "-0.1"),
        ("--spot-check", "1.01"),
        ("--spot-check", "nan"),
        ("--spot-check", "inf"),
        ("--spot-check", "often"),
    ],
    ids=lambda v: v,
)
def test_a_bad_value_is_refused_naming_its_option(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse(f"{flag}={value}")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err
    assert value in err


@pytest.mark.parametrize("flag", ["--check-newcomers", "--no-credibility"])
def test_the_switches_take_no_value(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(f"{flag}=yes")
    assert info.value.code == 2
    assert flag in capsys.readouterr().err


def test_each_new_option_has_a_one_line_help() -> None:
    parser = build_parser(["submit"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = {
        flag: action for action in sub.choices["submit"]._actions for flag in action.option_strings
    }
    for flag in (
        "--margin",
        "--max-extra-runs",
        "--spot-check",
        "--check-newcomers",
        "--no-credibility",
    ):
        text = actions[flag].help
        assert text and "\n" not in text, flag
