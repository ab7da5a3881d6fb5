"""What a step-mode job waits for at its gates, and the key that opens them.

This module owns :class:`GatePanel` and :func:`gate_text`. At the ``verdict`` gate it
shows, per shard, the proposals grouped by result CID with their votes and nodes,
who the verdict accepts and rejects (and why), and why no result won; or, when the
verdict asks for more runs on fresh nodes first (an escalation or a spot check), how
many and why. At the ``publish`` gate, the CID each accepted node is about to
publish. The panel is hidden while the job waits at no gate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text

from tui.jobview import GateSummary, counted, name_of
from tui.widgets.text_panel import TextPanel


def _names(peers: Sequence[str], names: Mapping[str, str]) -> str:
    return " ".join(name_of(p, names) for p in peers)


def _gate_lines(gate: GateSummary, names: Mapping[str, str]) -> list[Text]:
    """What is behind one shard's gate, a line each."""
    lines = []
    if gate.name == "verdict":
        for group in gate.groups:
            votes = f"{group.votes} vote{'s' if group.votes != 1 else ''}"
            if gate.more:  # nobody is accepted or rejected yet: no verdict on the group
                mark, style = "?", "yellow"
            else:
                mark, style = ("✓", "green") if group.accepted else ("✗", "red")
            lines.append(
                Text.assemble(
                    (f"{mark} ", style),
                    f"{votes:>7}  ",
                    (group.cid, "bold" if group.accepted else ""),
                    (f"  {_names(group.nodes, names)}", "dim"),
                )
            )
        by_reason: dict[str, list[str]] = {}
        for node, reason in gate.rejected:
            by_reason.setdefault(reason, []).append(node)
        for reason, nodes in by_reason.items():
            lines.append(Text.assemble(("rejected ", "red"), f"{_names(nodes, names)}: {reason}"))
        if gate.failure:
            lines.append(Text.assemble(("no winner: ", "bold red"), gate.failure))
        if gate.more:
            lines.append(
                Text.assemble(
                    (f"asks for {counted(gate.more, 'more run')}", "bold yellow"),
                    " on fresh nodes before its verdict",
                    f": {gate.why_more}" if gate.why_more else "",
                )
            )
        if not lines:
            lines.append(Text("no proposals"))
    elif gate.name == "publish":
        by_cid: dict[str, list[str]] = {}
        for node, cid in gate.results:
            by_cid.setdefault(cid, []).append(node)
        for cid, nodes in by_cid.items():
            lines.append(
                Text.assemble(
                    ("publish ", "blue"), (cid, "bold"), (f"  from {_names(nodes, names)}", "dim")
                )
            )
        if not lines:
            lines.append(Text("nothing to publish"))
    else:
        lines.append(Text(gate.name))
    return lines


def gate_text(gates: Sequence[GateSummary], names: Mapping[str, str], key: str) -> Text:
    """The panel's text: one block per shard that waits (``key`` opens them all)."""
    text = Text()
    if not gates:
        return text
    kinds = sorted({g.name for g in gates})
    actions = " and ".join(dict.fromkeys(g.action for g in gates))
    waiting = f"{len(gates)} shards wait" if len(gates) > 1 else "the job waits"
    text.append("⏸ ", style="bold yellow")
    text.append(f"{waiting} at the {' and '.join(kinds)} gate", style="bold")
    text.append(" · ")
    text.append(key, style="bold reverse")
    text.append(f" opens it: {actions}")
    width = max(len(f"shard {g.shard}") for g in gates) + 1
    for gate in gates:
        for i, body in enumerate(_gate_lines(gate, names)):
            text.append("\n")
            text.append(f"shard {gate.shard}".ljust(width) if i == 0 else " " * width, "bold")
            text.append_text(body)
    return text


class GatePanel(TextPanel):
    """The gates a step-mode job waits at, and what is behind them."""

    def show_gates(self, gates: Sequence[GateSummary], names: Mapping[str, str], key: str) -> None:
        self.show_text(gate_text(gates, names, key))
        self.display = bool(gates)
