"""The job view's header (what the job is, where it stands) and its results panel.

This module owns :class:`JobHeader` with :func:`header_text`, and
:class:`ResultsPanel` with :func:`results_text`: per shard, the CID published and the
nodes that hold it, the shard's phase latencies (with its re-runs and the runs its
escalations and spot checks added), and the stdout preview of a run that produced
it. Both render only what the job's answer holds (:data:`~tui.format.MISSING` for the
rest).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text

from tui.format import MISSING, fmt_age, fmt_seconds
from tui.jobview import JobSummary, ShardPhases, ShardResult, counted, name_of
from tui.widgets.job_table import STATE_STYLE
from tui.widgets.text_panel import TextPanel

#: Lines of a shard's stdout preview the results panel shows.
STDOUT_LINES = 4


def header_text(
    summary: JobSummary | None,
    names: Mapping[str, str],
    now: float,
    *,
    job_id: str,
    problem: str = "",
) -> Text:
    """The job's identity, state, spec, age and total; ``problem`` is why the view may be
    stale (the requester did not answer)."""
    text = Text()
    text.append("Job ", style="bold")
    text.append(job_id, style="bold")
    if summary is None:
        text.append(" · ")
        text.append(problem or "asking the nodes …", style="yellow" if problem else "dim")
        return text
    paused = " ⏸ step" if summary.step and not summary.terminal else ""
    text.append(" · ")
    text.append(f"{summary.state}{paused}", style=STATE_STYLE.get(summary.state, ""))
    text.append(f" · requester {name_of(summary.requester, names) or MISSING}")
    if summary.terminal:
        text.append(f" · total {fmt_seconds(summary.total_s)}")
    else:
        age = None if summary.created_at is None else now - summary.created_at
        text.append(f" · age {fmt_age(age)}")

    what = summary.image if summary.engine == "docker" else f"({summary.engine} engine)"
    text.append(f"\n{what or MISSING}", style="bold")
    if summary.command:
        text.append(f" {summary.command}")
    deal = f"concurrency {summary.concurrency if summary.concurrency is not None else MISSING}"
    if summary.confidence:
        deal += f", confidence {summary.confidence}"
    shards = f"{summary.shards} shard{'s' if summary.shards != 1 else ''}"
    text.append(
        f" · {deal} · verifier {summary.verifier or MISSING}"
        f" · publisher {summary.publisher or MISSING} · {shards}"
    )
    if summary.step:
        text.append(" · step mode")
    if summary.inputs or summary.sharding:
        text.append("\ninputs ")
        text.append(" ".join(summary.inputs) or MISSING)
        if summary.sharding:
            text.append(f" · sharding {summary.sharding}")
    if summary.waiting and not summary.terminal:
        text.append("\nwhy ", style="bold")
        text.append("; ".join(summary.waiting), style="yellow")
    if summary.reason:
        text.append("\n")
        text.append(summary.reason, style="bold red" if summary.state == "error" else "")
    if problem:
        text.append("\n")
        text.append(problem, style="yellow")
    return text


def _phases_line(phases: ShardPhases | None, step: bool) -> str:
    if phases is None:
        return ""
    gated = "⏸" if step and phases.verdict_s is not None else ""
    parts = [
        f"first bid {fmt_seconds(phases.first_bid_s)}",
        f"accepted {fmt_seconds(phases.accepted_s)}",
        f"runs {fmt_seconds(phases.runs_s)}",
        f"verdict {fmt_seconds(phases.verdict_s)}{gated}",
        f"published {fmt_seconds(phases.published_s)}",
        f"total {fmt_seconds(phases.total_s)}",
    ]
    if phases.attempts > 1:
        parts.append(f"attempt {phases.attempts}")
    if phases.extra_runs:
        checks = ((phases.escalations, "escalation"), (phases.spot_checks, "spot check"))
        why = [counted(count, noun) for count, noun in checks if count]
        extra = f"+{counted(phases.extra_runs, 'extra run')}"
        parts.append(f"{extra} ({', '.join(why)})" if why else extra)
    return " · ".join(parts)


def results_text(
    results: Sequence[ShardResult],
    phases: Sequence[ShardPhases],
    names: Mapping[str, str],
    *,
    step: bool = False,
    ended: bool = False,
) -> Text:
    """Per shard: its CID and holders, its phases, and a stdout preview (``ended``: the
    job ended, so a result not verified by now never will be)."""
    by_shard = {p.shard: p for p in phases}
    text = Text()
    if not results:
        text.append(f"no results yet {MISSING}", style="dim")
        return text
    for i, result in enumerate(results):
        if i:
            text.append("\n")
        text.append(f"shard {result.shard} ", style="bold")
        if result.cid:
            text.append(result.cid, style="bold green")
            holders = " ".join(name_of(p, names) for p in result.providers)
            if holders:
                text.append(f"  on {holders}", style="dim")
            elif result.locations:
                text.append(f"  at {' '.join(result.locations)}", style="dim")
        else:
            text.append(f"CID {MISSING}", style="dim")
        line = _phases_line(by_shard.get(result.shard), step)
        if line:
            text.append(f"\n  {line}", style="dim")
        if result.stdout is None:
            continue
        origin = name_of(result.from_node, names)
        exit_code = MISSING if result.exit_code is None else str(result.exit_code)
        verified = "" if result.verified else ", not verified" if ended else ", not verified yet"
        text.append(f"\n  stdout of {origin} (exit {exit_code}{verified}):", style="dim")
        lines = result.stdout.splitlines() or [""]
        for out in lines[:STDOUT_LINES]:
            text.append(f"\n    {out}")
        if len(lines) > STDOUT_LINES:
            text.append(f"\n    … {len(lines) - STDOUT_LINES} more line(s)", style="dim")
    return text


class JobHeader(TextPanel):
    """The job's identity and state."""


class ResultsPanel(TextPanel):
    """Each shard's CID, phases and stdout preview."""
