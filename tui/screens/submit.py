"""The submit form (``s``): a job spec field by field, checked before it is sent.

This module owns :class:`SubmitScreen`, a modal over the current view. Its fields:
the node to submit to (the job's requester), engine, image (one of the images the
nodes have, ``GET /api/v1/images`` on each, asked by a worker when the form opens),
command (split as a shell would), concurrency, confidence, verifier, publisher, step
mode, inputs (``CID[:/inputs/PATH]``, as ``devstack submit -i``) and sharding (glob
pattern, batch size).

``ctrl+s`` (or ``enter`` in a text field, or the button) checks the form with the
API's own rules (:func:`tui.submitspec.check_form`): an error is shown under its
field, which takes the focus, and nothing is sent. A checked spec is sent to the
chosen node (:meth:`devstack.client.aio.AsyncNodeClient.submit`); a 400 the node
answers (an input CID no node holds, a concurrency above the live network, a glob
that matches nothing) is shown under the field it names the same way. Once
accepted: a notification with the job's id, the form closes and the job view opens.
``esc`` closes the form.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import var
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static, Switch

from devstack.client.calls import NodeApiError
from node.models import JobSpec
from tui.format import short_id, short_job_id
from tui.host import TuiHost, host_of
from tui.screens import job as job_screen
from tui.source import NodeStatus, NodeTarget
from tui.submitspec import (
    ENGINE_CHOICES,
    FIELDS,
    GENERAL,
    PUBLISHER_CHOICES,
    VERIFIER_CHOICES,
    FormValues,
    check_form,
    refusal,
)

#: Seconds each node has to list its images when the form opens.
IMAGES_TIMEOUT_S = 3.0
#: Nodes asked for their images at once.
IMAGES_CONCURRENCY = 8
#: How an error names the field it is under (the fields in a row share the line).
LABELS = {
    "node": "node",
    "engine": "engine",
    "image": "image",
    "command": "command",
    "concurrency": "concurrency",
    "confidence": "confidence",
    "verifier": "verifier",
    "publisher": "publisher",
    "step": "step mode",
    "inputs": "inputs",
    "glob": "glob pattern",
    "batch": "batch size",
}


def image_options(per_node: list[list[str] | None]) -> list[tuple[str, str]]:
    """Select options for the images the nodes have: the most widely held first, each
    labelled with how many of the nodes that answered have it."""
    answered = [images for images in per_node if images is not None]
    counts = Counter(image for images in answered for image in set(images))
    ordered = sorted(counts, key=lambda image: (-counts[image], image))
    return [(f"{image}  ({counts[image]}/{len(answered)} nodes)", image) for image in ordered]


class SubmitScreen(ModalScreen[str | None]):
    """A job spec, field by field; dismissed with the new job's id (None: cancelled)."""

    CSS_PATH = Path(__file__).with_name("submit.tcss")
    AUTO_FOCUS = "#command"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Submit", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    submitting: var[bool] = var(False, init=False)
    """A spec is on its way to the node (the form takes no second one meanwhile)."""

    def __init__(self, *, node: int = 0) -> None:
        super().__init__()
        self._node = node
        self._erred: dict[str, Any] = {}  # field -> the value its error was shown for

    # -- layout -------------------------------------------------------------------------

    @property
    def bacalhau(self) -> TuiHost:
        return host_of(self)

    def _targets(self) -> tuple[NodeTarget, ...]:
        return self.bacalhau.source.targets or self.bacalhau.source.reload()

    def _node_options(self) -> list[tuple[str, int]]:
        snapshot = self.bacalhau.snapshot
        options = []
        for target in self._targets():
            row = snapshot.node(target.peer_id) if snapshot is not None else None
            status = "" if row is None or row.status is NodeStatus.UP else f" ({row.status})"
            options.append((f"{target.name}  {short_id(target.peer_id)}{status}", target.index))
        return options

    @staticmethod
    def _field(name: str, label: str, widget: Widget) -> Vertical:
        """A field: its label over its widget."""
        return Vertical(
            Label(label, classes="field-label", markup=False),
            widget,
            id=f"{name}-field",
            classes="field",
        )

    @classmethod
    def _choice(cls, name: str, choices: tuple[str, ...], default: str) -> Vertical:
        """A field picking one of ``choices`` (the node's own names), ``default`` first."""
        select = Select([(c, c) for c in choices], value=default, allow_blank=False, id=name)
        return cls._field(name, name, select)

    @staticmethod
    def _row(*fields: Vertical) -> ComposeResult:
        """Fields side by side, then the line each one's error appears on (under the row,
        so a narrow field's message is not squeezed into its width)."""
        yield Horizontal(*fields, classes="row")
        for field in fields:
            name = str(field.id).removesuffix("-field")
            yield Static("", id=f"{name}-error", classes="field-error", markup=False)

    def compose(self) -> ComposeResult:
        nodes = self._node_options()
        first = next((index for _, index in nodes if index == self._node), None)
        with VerticalScroll(id="form") as form:
            form.border_title = "Submit a job"
            form.border_subtitle = "ctrl+s submit · esc cancel"
            yield from self._row(
                self._field(
                    "node",
                    "node (the job's requester)",
                    Select(
                        nodes,
                        value=first if first is not None else Select.NULL,
                        allow_blank=first is None,
                        prompt="no node",
                        id="node",
                    ),
                ),
                self._choice("engine", ENGINE_CHOICES, "docker"),
            )
            yield from self._row(
                self._field(
                    "image",
                    "image (the images the nodes have)",
                    Select([], prompt="asking the nodes for their images …", id="image"),
                )
            )
            yield from self._row(
                self._field(
                    "command",
                    "command (split as a shell would)",
                    Input(placeholder="echo hello", id="command"),
                )
            )
            yield from self._row(
                self._field(
                    "concurrency", "concurrency", Input("1", type="integer", id="concurrency")
                ),
                self._field(
                    "confidence", "confidence", Input("0", type="integer", id="confidence")
                ),
                self._choice("verifier", VERIFIER_CHOICES, "noop"),
                self._choice("publisher", PUBLISHER_CHOICES, "ipfs"),
                self._field("step", "step mode", Switch(False, id="step")),
            )
            yield from self._row(
                self._field(
                    "inputs",
                    "inputs: CID[:/inputs/PATH] …",
                    Input(placeholder="bafy…  or  bafy…:/inputs/books", id="inputs"),
                )
            )
            yield from self._row(
                self._field(
                    "glob", "sharding: glob pattern", Input(placeholder="/inputs/*.txt", id="glob")
                ),
                self._field("batch", "batch size", Input("1", type="integer", id="batch")),
            )
            with Horizontal(id="buttons"):
                yield Button("Submit (ctrl+s)", variant="primary", id="submit")
                yield Button("Cancel (esc)", id="cancel")
            yield Static("", id=f"{GENERAL}-error", classes="field-error", markup=False)
            yield Static("", id="status", markup=False)

    def on_mount(self) -> None:
        self._ask_images()

    # -- images -------------------------------------------------------------------------

    @work(exclusive=True, group="images", name="ask the nodes for their images")
    async def _ask_images(self) -> None:
        targets = self._targets()
        semaphore = asyncio.Semaphore(IMAGES_CONCURRENCY)

        async def images(target: NodeTarget) -> list[str] | None:
            async with semaphore:
                api = job_screen.connect(target.api, timeout=IMAGES_TIMEOUT_S)
                try:
                    return await api.images()
                except NodeApiError:
                    return None
                finally:
                    await api.aclose()

        per_node = await asyncio.gather(*(images(t) for t in targets))
        options = image_options(per_node)
        select = self.query_one("#image", Select)
        select.set_options(options)
        if options:
            select.value = options[0][1]
            select.prompt = "choose an image"
        else:
            answered = sum(1 for images in per_node if images is not None)
            select.prompt = (
                "no node answered: is the cluster up?"
                if not answered
                else "the nodes have no images (the noop engine needs none)"
            )

    # -- the form -----------------------------------------------------------------------

    def values(self) -> FormValues:
        """What the form holds now."""

        def text(name: str) -> str:
            return self.query_one(f"#{name}", Input).value

        def choice(name: str) -> str:
            value = self.query_one(f"#{name}", Select).value
            return "" if value is Select.NULL else str(value)

        return FormValues(
            engine=choice("engine"),
            image=choice("image"),
            command=text("command"),
            concurrency=text("concurrency"),
            confidence=text("confidence"),
            verifier=choice("verifier"),
            publisher=choice("publisher"),
            step=self.query_one("#step", Switch).value,
            inputs=text("inputs"),
            glob=text("glob"),
            batch=text("batch"),
        )

    def errors(self) -> dict[str, str]:
        """The errors shown now, by field (for tests)."""
        shown = {}
        for name in (*FIELDS, GENERAL):
            message = str(self.query_one(f"#{name}-error", Static).content)
            if message:
                shown[name] = message.removeprefix(f"{LABELS.get(name)}: ")
        return shown

    def show_errors(self, errors: dict[str, str]) -> None:
        """Show each error under its field (clearing the others); focus the first."""
        for name in (*FIELDS, GENERAL):
            message = errors.get(name, "")
            prefix = f"{LABELS[name]}: " if message and name in LABELS else ""
            self.query_one(f"#{name}-error", Static).update(prefix + message)
            self.query_one(f"#{name}-error").set_class(bool(message), "-shown")
            field = self.query(f"#{name}-field")
            if field:
                field.first().set_class(bool(message), "-invalid")
        self._erred = {
            name: getattr(self.query_one(f"#{name}"), "value", None)
            for name in FIELDS
            if name in errors
        }
        first = next((name for name in FIELDS if name in errors), None)
        if first is not None:
            widget = self.query_one(f"#{first}")
            widget.focus()
            self.query_one("#form", VerticalScroll).scroll_to_widget(widget)

    def _target(self) -> NodeTarget | None:
        chosen = self.query_one("#node", Select).value
        return next((t for t in self._targets() if t.index == chosen), None)

    def action_submit(self) -> None:
        if self.submitting:
            return
        target = self._target()
        if target is None:
            self.show_errors({"node": "choose the node to submit the job to"})
            return
        checked = check_form(self.values(), network_size=len(self._targets()) or None)
        if checked.spec is None:
            self.show_errors(checked.errors)
            return
        self.show_errors({})
        self._send(checked.spec, target)

    @work(exclusive=True, group="submit", name="submit the job")
    async def _send(self, spec: JobSpec, target: NodeTarget) -> None:
        self.submitting = True
        wait = " (it fetches the inputs first)" if spec.inputs else ""
        self.query_one("#status", Static).update(f"submitting to {target.name} …{wait}")
        api = job_screen.connect(target.api)
        try:
            answer = await api.submit(spec)
        except NodeApiError as exc:
            self.show_errors(refusal(exc.field, exc.message, self.values().inputs))
            self.query_one("#status", Static).update("")
            self.submitting = False
            return
        finally:
            await api.aclose()
        job_id = str(answer.get("id") or "")
        requester = str(answer.get("requester") or target.peer_id)
        self.app.notify(
            f"job {job_id} submitted to {target.name}",
            title=f"Submitted {short_job_id(job_id)}",
        )
        self.bacalhau.poll_now()  # the jobs list shows it at once rather than at the next round
        app = self.app

        def open_job() -> None:
            app.push_screen(job_screen.JobScreen(job_id, requester=requester))

        self.dismiss(job_id)
        app.call_later(open_job)

    def watch_submitting(self, submitting: bool) -> None:
        self.query_one("#submit", Button).disabled = submitting

    def action_cancel(self) -> None:
        if not self.submitting:
            self.dismiss(None)

    @on(Button.Pressed, "#submit")
    def _submit_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_submit()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_cancel()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Switch.Changed)
    def _edited(self, event: Any) -> None:
        # An error stays until its field is edited: then it is stale. Compared with the
        # value it was shown for, since a change message may arrive after the submit key
        # that was pressed after the change (a value set, then ctrl+s at once).
        widget_id = getattr(event.control, "id", None)
        if widget_id not in self._erred or self._erred[widget_id] == event.control.value:
            return
        del self._erred[widget_id]
        error = self.query_one(f"#{widget_id}-error", Static)
        error.update("")
        error.remove_class("-shown")
        self.query_one(f"#{widget_id}-field").remove_class("-invalid")

    def check_consume_key(self, key: str, character: str | None) -> bool:
        # The app's one-letter keys (q quits, n and j switch views, s opens this form)
        # must not act while the form is open: every printable key belongs to the form.
        return character is not None and character.isprintable()
