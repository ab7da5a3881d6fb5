"""The submit form's values turned into a job spec, checked by the API's own rules.

This module owns :class:`FormValues` (what the form holds, as typed),
:func:`check_form` (the :class:`~node.models.JobSpec` to send, as the API decodes
it, or an error per form field) and
:func:`form_field` (which field of the form a spec field the API names belongs to).
The rules are the node's: the spec is checked with :func:`node.models.decode_spec`,
the function ``POST /api/v1/jobs`` runs on what it receives, so a value the form lets
through is one the API takes, and the message shown is the API's. Inputs are parsed
with :func:`node.models.parse_input_arg`, as ``devstack submit -i`` does. Pure: no
Textual, no I/O, and nothing of the node but its model.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from node.models import (
    ENGINES,
    PUBLISHERS,
    VERIFIERS,
    InputError,
    JobSpec,
    SpecError,
    decode_spec,
    parse_input_arg,
)

#: The form's fields, in the order they are laid out (and errors are focused).
FIELDS = (
    "node",
    "engine",
    "image",
    "command",
    "concurrency",
    "confidence",
    "verifier",
    "publisher",
    "step",
    "inputs",
    "glob",
    "batch",
)
#: Where an error that names no field of the form is shown.
GENERAL = "general"

ENGINE_CHOICES: tuple[str, ...] = tuple(ENGINES)
VERIFIER_CHOICES: tuple[str, ...] = tuple(VERIFIERS)
PUBLISHER_CHOICES: tuple[str, ...] = tuple(PUBLISHERS)

_SPEC_TO_FORM: Mapping[str, str] = {
    "engine": "engine",
    "image": "image",
    "command": "command",
    "entrypoint": "command",
    "deal": "concurrency",
    "deal.concurrency": "concurrency",
    "deal.confidence": "confidence",
    "verifier": "verifier",
    "publisher": "publisher",
    "step": "step",
    "inputs": "inputs",
    "sharding": "glob",
    "sharding.glob_pattern": "glob",
    "sharding.batch_size": "batch",
}
_INPUT_FIELD = re.compile(r"^inputs\[(\d+)\](?:\.(\w+))?$")
_INTEGER = re.compile(r"^\s*[-+]?\d+\s*$")


def form_field(spec_field: str) -> str:
    """The form field that shows an error about ``spec_field`` (``"deal.confidence"``
    → ``"confidence"``, ``"inputs[1].cid"`` → ``"inputs"``); :data:`GENERAL` for a
    field the form has no widget for."""
    if _INPUT_FIELD.match(spec_field):
        return "inputs"
    return _SPEC_TO_FORM.get(spec_field, GENERAL)


def field_message(spec_field: str, message: str, inputs: tuple[str, ...] = ()) -> str:
    """The message shown under the field: for one input of several, which one it is."""
    match = _INPUT_FIELD.match(spec_field)
    if match and len(inputs) > 1:
        index = int(match.group(1))
        which = inputs[index] if index < len(inputs) else f"#{index + 1}"
        return f"input {index + 1} ({which}): {message}"
    return message


@dataclass(frozen=True)
class FormValues:
    """The form as typed: text fields as strings, choices as the value chosen."""

    engine: str = "docker"
    image: str = ""
    command: str = ""
    concurrency: str = "1"
    confidence: str = "0"
    verifier: str = "noop"
    publisher: str = "ipfs"
    step: bool = False
    inputs: str = ""  # CID[:/inputs/PATH], separated by spaces or commas
    glob: str = ""
    batch: str = "1"


@dataclass(frozen=True)
class Checked:
    """The spec to send (None if the form has errors) and the errors by form field."""

    spec: JobSpec | None
    errors: dict[str, str] = field(default_factory=dict)


def _integer(text: str) -> int | str:
    """A whole number as an int; anything else as typed, so the API's decoder names it
    (``Expected `int`, got `str```) exactly as it would over HTTP."""
    return int(text) if _INTEGER.match(text) else text


def input_words(text: str) -> tuple[str, ...]:
    """The inputs typed: ``CID[:/inputs/PATH]`` words separated by spaces or commas."""
    return tuple(word for word in re.split(r"[\s,]+", text.strip()) if word)


def build_spec(values: FormValues) -> tuple[dict[str, Any], dict[str, str]]:
    """The spec dict the form's values say, and the errors found reading them (a
    command a shell could not split, an input that is not ``CID[:/inputs/PATH]``, a
    batch size without a glob pattern)."""
    errors: dict[str, str] = {}
    try:
        command = shlex.split(values.command)
    except ValueError as exc:
        errors["command"] = f"cannot split it as a shell would: {exc}"
        command = []
    inputs = []
    for word in input_words(values.inputs):
        try:
            cid, path = parse_input_arg(word)
        except InputError as exc:
            errors.setdefault("inputs", str(exc))
            continue
        inputs.append({"cid": cid, "path": path})
    spec: dict[str, Any] = {
        "engine": values.engine,
        "image": values.image.strip(),
        "command": command,
        "deal": {
            "concurrency": _integer(values.concurrency),
            "confidence": _integer(values.confidence),
        },
        "verifier": values.verifier,
        "publisher": values.publisher,
        "step": values.step,
        "inputs": inputs,
    }
    if values.glob.strip():
        spec["sharding"] = {
            "glob_pattern": values.glob.strip(),
            "batch_size": _integer(values.batch.strip() or "1"),
        }
    elif values.batch.strip() not in ("", "1"):
        errors["glob"] = "a batch size shards the inputs matching a glob pattern: give one"
    return spec, errors


def check_form(values: FormValues, network_size: int | None = None) -> Checked:
    """The spec to submit, or the errors to show: the form's own reading first, then
    the API's rules (:func:`node.models.decode_spec` on the JSON that would be sent;
    it stops at the first offending field, as the API does). ``network_size`` bounds
    the concurrency as the requester will (the nodes it knows)."""
    spec, errors = build_spec(values)
    if errors:
        return Checked(None, errors)
    try:
        checked = decode_spec(json.dumps(spec).encode(), network_size)
    except SpecError as exc:
        return Checked(None, refusal(exc.field, exc.message, values.inputs))
    return Checked(checked)


def refusal(spec_field: str, message: str, inputs: str) -> dict[str, str]:
    """The error to show for a refusal naming ``spec_field`` (by the model here, or by
    the node): under the form field it belongs to, else in general, naming it."""
    where = form_field(spec_field) if spec_field else GENERAL
    text = field_message(spec_field, message, input_words(inputs))
    if where == GENERAL and spec_field:
        text = f"{spec_field}: {text}"
    return {where: text}
