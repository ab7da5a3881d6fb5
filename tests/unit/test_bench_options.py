"""``devstack bench``'s parsers (:mod:`devstack.bench.options`): the node's choices it
writes out match the node's, building them imports nothing heavy, and every bench
verb has its module, with a ``run`` and a description for its help."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from devstack.bench import options
from node import argtypes
from node.bidder import BIDDERS, DEFAULT_BIDDER
from node.requester import DEFAULT_DISPATCH, DISPATCHES

pytestmark = pytest.mark.timeout(60)


def bench_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(prog="devstack bench")
    options.add_bench_parser(parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_the_node_choices_written_out_are_the_nodes() -> None:
    assert tuple(sorted(BIDDERS)) == argtypes.BIDDERS
    assert argtypes.DEFAULT_BIDDER == DEFAULT_BIDDER
    assert tuple(DISPATCHES) == argtypes.DISPATCHES
    assert argtypes.DEFAULT_DISPATCH == DEFAULT_DISPATCH


def test_building_the_parsers_imports_nothing_heavy() -> None:
    """In a fresh interpreter: no node role, Docker, HTTP client, trio or psutil."""
    code = (
        "import argparse, sys\n"
        "from devstack.bench.options import add_bench_parser\n"
        "add_bench_parser(argparse.ArgumentParser())\n"
        "print('\\n'.join(sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    loaded = set(done.stdout.split())
    heavy = {"trio", "httpx", "psutil", "docker", "libp2p"}
    light_ours = {"node", "node.argtypes", "devstack", "devstack.bench", "devstack.bench.options"}
    assert not {m for m in loaded if m.split(".")[0] in heavy}
    assert {m for m in loaded if m.split(".")[0] in ("node", "devstack")} <= light_ours


@pytest.mark.parametrize("name", sorted(bench_parsers()))
def test_each_bench_has_its_module_run_and_description(name: str) -> None:
    module = importlib.import_module(f"devstack.bench.{name}")
    assert callable(module.run)
    assert module.__doc__ is not None
    description = module.__doc__.split("\n\n")[1]
    assert options.module_description(module.__name__) == description
    first_words = " ".join(description.split()[:4])
    assert first_words in " ".join(bench_parsers()[name].format_help().split())
