"""What a bad actor (``--bad-actor``, ``devstack up --bad-actors K``) does: it runs the
job as everyone else, then changes the results before proposing them, so its
proposal's CID differs from the honest nodes' (README, verification: the deterministic verifier
must reject it). It works with any executor, since it edits the results tree.

How it forges is a :class:`Forgery`:

- **Colluding** (the default) bad actors act as one adversary. They forge the same
  shards, the same way, so their forged results are equal and outvote an honest
  minority.
- **Alone** (``--no-collude``), each forges its own way. Its result matches nobody
  else's.
- **A share of results** (``--bad-actor-rate P``): a bad actor forges only about
  that share and runs the rest honestly, which is harder to catch. Which shards is
  decided by a hash, the same on every run. Colluders hash the shard alone, so they
  pick the same shards; a lone actor hashes its node id too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

FORGED_LINE = b"forged by a bad actor\n"


def _fraction(key: str) -> float:
    """``key`` hashed to a number in [0, 1), the same on every run and machine."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class Forgery:
    """How one bad actor forges: with the others (``collude``) or alone, and the
    share of its results it forges (``rate``, in (0, 1]).

    Raises ValueError for a rate outside (0, 1].
    """

    collude: bool = True
    rate: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 1:
            raise ValueError(f"a bad actor's rate must be in (0, 1], got {self.rate}")

    def forges(self, node_id: str, job_id: str, shard: int) -> bool:
        """Whether the bad actor ``node_id`` forges its result of ``shard`` of ``job_id``."""
        key = f"{job_id}/{shard}" if self.collude else f"{node_id}/{job_id}/{shard}"
        return _fraction(key) < self.rate

    def line(self, node_id: str) -> bytes:
        """What it appends to stdout: one line for every colluder, its own otherwise."""
        return FORGED_LINE if self.collude else f"forged by bad actor {node_id}\n".encode()

    def describe(self) -> dict[str, object]:
        """For ``GET /api/v1/node``."""
        return {"collude": self.collude, "rate": self.rate}


def forge_results(results_dir: Path, line: bytes = FORGED_LINE) -> None:
    """Append ``line`` to the tree's stdout (created if absent)."""
    with (results_dir / "stdout").open("ab") as stdout:
        stdout.write(line)
