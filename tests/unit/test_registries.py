"""What :mod:`node.models` knows of the node without importing it agrees with the node.

The spec's names (engines, verifiers, publishers) and its CID syntax are written in
models, which imports nothing of the node; these tests keep them equal to the
implementations, and models light enough for a client to load alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from node import models
from node.content import DAG_PB, RAW, Cid, add_bytes
from node.content.store import BlockStore
from node.executors.docker import DockerExecutor
from node.jobinputs import mounts_of
from node.node import make_executors
from node.publishers import PUBLISHERS, make_publishers
from node.results import ResultStore
from node.verifiers import VERIFIERS

ROOT = Path(__file__).resolve().parents[2]


def test_the_engines_are_the_executors() -> None:
    assert set(make_executors(DockerExecutor())) == set(models.ENGINES)


def test_the_verifier_names_are_the_verifiers() -> None:
    # Same order too: validate_spec lists the known names in it.
    assert tuple(VERIFIERS) == models.VERIFIERS


def test_the_publisher_names_are_the_publishers(tmp_path: Path) -> None:
    assert models.PUBLISHERS == PUBLISHERS
    made = make_publishers(
        ResultStore(tmp_path / "results"),
        BlockStore(tmp_path / "blocks"),
        api_url="http://127.0.0.1:1",
        scratch=tmp_path / "scratch",
    )
    assert tuple(made) == PUBLISHERS


def test_the_cid_syntax_takes_every_cid_the_node_makes() -> None:
    for block in (b"", b"x", b"\xff" * 1000):
        for codec in (RAW, DAG_PB):
            models.check_cid_syntax(Cid.of(codec, block).text)
        models.check_cid_syntax(Cid(0, DAG_PB, Cid.of(DAG_PB, block).digest).text)
    models.check_cid_syntax(add_bytes(b"hello\n")[0])


@pytest.mark.parametrize(
    "text",
    ["", "not-a-cid", "bafy", "Qm", "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG0"],
)
def test_the_cid_syntax_refuses_what_is_no_cid(text: str) -> None:
    with pytest.raises(models.InputError, match="CID"):
        models.check_cid_syntax(text)
    spec = models.JobSpec(engine="noop", inputs=[models.InputSource(cid=text)])
    with pytest.raises(models.SpecError) as info:
        models.validate_spec(spec)
    assert info.value.field == "inputs[0].cid"


def test_a_cid_of_good_syntax_that_does_not_parse_is_refused_naming_it() -> None:
    text = "Qm" + "z" * 44  # base58btc of the right length, but no CIDv0
    spec = models.JobSpec(engine="noop", inputs=[models.InputSource(cid=text)])
    models.validate_spec(spec)  # the syntax is all the model checks
    with pytest.raises(models.SpecError) as info:
        mounts_of(spec)  # what the requester and compute nodes do with a spec's inputs
    assert info.value.field == "inputs[0].cid"


def test_importing_the_models_loads_no_node_machinery() -> None:
    code = (
        "import node.models, sys; print(sorted(m for m in sys.modules"
        " if m.split('.')[0] in {'trio','libp2p','docker','httpx'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_written_out_terminal_states_are_the_models() -> None:
    from devstack.jobs import TERMINAL

    assert {state.value for state in models.JobState if state.terminal} == TERMINAL
