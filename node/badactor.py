"""What a bad actor (``--bad-actor``, ``devstack up --bad-actors K``) does: it runs the
job as everyone else, then changes the results before proposing them, so its
proposal's CID differs from the honest nodes' (README, verification: the deterministic verifier
must reject it). It works with any executor, since it edits the results tree."""

from __future__ import annotations

from pathlib import Path

FORGED_LINE = b"forged by a bad actor\n"


def forge_results(results_dir: Path) -> None:
    """Append a line to the tree's stdout (created if absent)."""
    with (results_dir / "stdout").open("ab") as stdout:
        stdout.write(FORGED_LINE)
