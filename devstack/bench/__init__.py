"""``devstack bench``: benchmarks that print figures (not tests).

The package's layers, each importing only those below it:

- one module per bench, named after its verb (``cluster``, ``overhead``, ``bids``,
  ``chaos``, ``executor``, ``load``, ``publish``, ``shards``, ``partition``,
  ``byzantine``), each with ``run(args)``; no bench module imports another, except
  that ``partition`` and ``byzantine`` stream jobs with ``chaos``'s parts;
- the helpers they share: :mod:`~devstack.bench.workload` (the jobs a bench submits
  and reads back), :mod:`~devstack.bench.burst` (the load generator) and
  :mod:`~devstack.bench.native` (the same container run by Docker alone);
- :mod:`~devstack.bench.harness`: the cluster under test, settling, the report and
  the summaries;
- :mod:`~devstack.bench.options`: every bench's sub-parser, light enough for
  ``devstack --help`` (no node, Docker or HTTP import).

:func:`run` imports the chosen bench's module only when it runs.
"""

from __future__ import annotations

import argparse
import importlib


def run(args: argparse.Namespace) -> int:
    """Run the bench ``args.bench`` chose (its module, named after it); its exit status."""
    bench = importlib.import_module(f"{__name__}.{args.bench}")
    status: int = bench.run(args)
    return status
