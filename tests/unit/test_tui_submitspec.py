"""The submit form's reading of its values (:mod:`tui.submitspec`): the spec it builds,
and the errors it maps to its fields, with the API's own rules and messages."""

from __future__ import annotations

import pytest

from node.models import Deal, InputSource, JobSpec, Sharding
from tui.submitspec import GENERAL, FormValues, check_form, field_message, form_field

CID = "bafybeiar63jncc22ktivr2vc6uvlrxmvl4exk7ogbfogbz66pbkeyiswpe"


def test_a_good_form_gives_the_spec_to_send() -> None:
    checked = check_form(
        FormValues(
            image="busybox:latest",
            command="sh -c 'wc -l /inputs/*.txt'",
            concurrency="3",
            confidence="2",
            verifier="deterministic",
            publisher="noop",
            step=True,
            inputs=f"{CID}:/inputs/books, {CID}:/inputs/more",
            glob="/inputs/**/*.txt",
            batch="4",
        ),
        network_size=3,
    )
    assert checked.errors == {}
    assert checked.spec == JobSpec(
        engine="docker",
        image="busybox:latest",
        command=["sh", "-c", "wc -l /inputs/*.txt"],
        deal=Deal(concurrency=3, confidence=2),
        verifier="deterministic",
        publisher="noop",
        step=True,
        inputs=[
            InputSource(cid=CID, path="/inputs/books"),
            InputSource(cid=CID, path="/inputs/more"),
        ],
        sharding=Sharding(glob_pattern="/inputs/**/*.txt", batch_size=4),
    )


def test_the_noop_engine_needs_no_image_nor_command() -> None:
    assert check_form(FormValues(engine="noop")).spec is not None


@pytest.mark.parametrize(
    ("values", "network_size", "field", "message"),
    [
        (FormValues(image="busybox", command=""), None, "command", "needs a command"),
        (FormValues(image="busybox", command="echo 'hi"), None, "command", "No closing quotation"),
        (FormValues(image="", command="echo"), None, "image", "needs an image"),
        (
            FormValues(image="b", command="echo", concurrency="2", confidence="3"),
            None,
            "confidence",
            "between 0 and deal.concurrency",
        ),
        (FormValues(image="b", command="echo", concurrency="0"), None, "concurrency", "between 1"),
        (
            FormValues(image="b", command="echo", concurrency=""),
            None,
            "concurrency",
            "Expected `int`",
        ),
        (FormValues(image="b", command="echo", concurrency="4"), 3, "concurrency", "only 3 nodes"),
        (
            FormValues(image="b", command="echo", verifier="nope"),
            None,
            "verifier",
            "unknown verifier",
        ),
        (FormValues(image="b", command="echo", inputs="bafyXX"), None, "inputs", "bafyXX"),
        (
            FormValues(image="b", command="echo", inputs=f"{CID}:/inputs/a {CID}:/inputs/a/b"),
            None,
            "inputs",
            "cannot nest",
        ),
        (FormValues(image="b", command="echo", glob="/inputs/*"), None, "glob", "give inputs"),
        (
            FormValues(image="b", command="echo", inputs=CID, glob="/inputs/["),
            None,
            "glob",
            "without a closing",
        ),
        (
            FormValues(image="b", command="echo", inputs=CID, glob="/inputs/*", batch="0"),
            None,
            "batch",
            "at least 1",
        ),
        (FormValues(image="b", command="echo", batch="3"), None, "glob", "give one"),
    ],
)
def test_a_bad_value_is_an_error_under_its_field(
    values: FormValues, network_size: int | None, field: str, message: str
) -> None:
    checked = check_form(values, network_size)
    assert checked.spec is None
    assert list(checked.errors) == [field]
    assert message in checked.errors[field]


def test_api_fields_map_to_the_form() -> None:
    assert form_field("deal.confidence") == "confidence"
    assert form_field("deal.concurrency") == "concurrency"
    assert form_field("inputs[0].cid") == "inputs"
    assert form_field("inputs[12].path") == "inputs"
    assert form_field("inputs") == "inputs"
    assert form_field("sharding.glob_pattern") == "glob"
    assert form_field("sharding.batch_size") == "batch"
    assert form_field("entrypoint") == "command"
    assert form_field("timeout") == GENERAL
    assert form_field("env.X") == GENERAL


def test_a_message_about_one_input_of_several_says_which() -> None:
    inputs = (f"{CID}:/inputs/a", "bafyother")
    assert field_message("inputs[1].cid", "nobody holds it", inputs) == (
        "input 2 (bafyother): nobody holds it"
    )
    assert field_message("inputs[0].cid", "nobody holds it", inputs[:1]) == "nobody holds it"
    assert field_message("deal.confidence", "too big", inputs) == "too big"
