"""`devstack up --nodes 50` in a real terminal: a tmux pane at 120x40, driven by keys.

The test starts a detached tmux session of its own (its own server socket and a
unique session name) whose pane runs the launcher as a user would, so the launcher
starts 50 nodes, waits until they are ready and then opens the TUI because the pane
is a terminal. Keys go in with ``tmux send-keys``; what the test checks is what
``tmux capture-pane`` shows, polled with deadlines (nothing sleeps to synchronise).

It checks what a user sees, not how fast: the node table live with every node, the
view switches, a job to completion, the filter, the help, and the stop question.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import psutil
import pytest

from devstack import state as st
from devstack.jobs import TERMINAL
from tests.conftest import (
    DOWN_TIMEOUT_S,
    REPO,
    UP_TIMEOUT_S,
    Devstack,
    docker_client,
    labelled_containers,
    wait_until,
)
from tui.format import MISSING

pytestmark = [pytest.mark.slow]

TMUX = "/usr/bin/tmux"
NODES = 50
WIDTH, HEIGHT = 120, 40
# Node rows on screen at 120x40: the summary bar, the table's title and header and the
# key bar take 4 lines (a horizontal scrollbar may take one more).
MIN_ROWS_SHOWN = HEIGHT - 10
KEY_PRESSES = 4  # j, n, j, n
JOB_TIMEOUT_S = 240.0

READY = re.compile(r"devstack ready: (\d+) nodes in ([\d.]+)s")
# The launcher's last line, printed by the pane's shell once the launcher has exited.
EXITED = re.compile(r"launcher exit status (\d+)")
UP_SUMMARY = re.compile(r"(\d+)/(\d+) nodes up")
# The table's title on its top border: "─Nodes 50 · sort node ▲", "─Nodes 11 of 50 · filter ..."
TITLE = re.compile(r"^─(Nodes|Jobs) (\d+)(?: of (\d+))?", re.M)
# " node-7  U9tG  C     up             4.0  ▁▁▁▁▁▁  81.4M      2 ...": index, status, cpu%, rss
NODE_ROW = re.compile(
    r"^ node-(\d+) +\S{4} +\S+ +(up|unreachable|down) +(\S+) .*? (\d+(?:\.\d+)?[BKMG]) ", re.M
)

T = TypeVar("T")


class Tmux:
    """A tmux server and session of this test's own, one pane of WIDTH x HEIGHT."""

    def __init__(self) -> None:
        self.name = f"tui-tmux-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # The server inherits this environment: no inherited terminal size, no state dir.
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DEVSTACK_DIR", "TMUX", "TMUX_PANE", "COLUMNS", "LINES")
        }
        self.env["SHELL"] = "/bin/sh"
        self.socket: Path | None = None

    def run(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            [TMUX, "-L", self.name, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=self.env,
        )
        if check:
            assert result.returncode == 0, f"tmux {' '.join(args)}: {result.stderr.strip()}"
        return result.stdout

    def start(self, argv: list[str], cwd: Path) -> int:
        """Run ``argv`` in a new detached session; the pid of the pane's shell. The pane
        stays once its command exits, showing the launcher's last words and status."""
        command = f'{shlex.join(argv)}; echo "launcher exit status $?"'
        new = ["new-session", "-d", "-s", self.name, "-x", str(WIDTH), "-y", str(HEIGHT)]
        keep = ["set-option", "-w", "-t", self.name, "remain-on-exit", "on"]
        self.run(*new, "-c", str(cwd), command, ";", *keep)  # one tmux command, two steps
        pane_pid, socket = self.run(
            "display-message", "-p", "-t", self.name, "#{pane_pid} #{socket_path}"
        ).split()
        self.socket = Path(socket)
        return int(pane_pid)

    def screen(self, history: bool = False) -> str:
        """What the pane shows now (with ``history``, its scrollback above it too)."""
        return self.run("capture-pane", "-p", "-t", self.name, *(["-S", "-"] if history else []))

    def send(self, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", self.name, *(["-l"] if literal else []), *keys)

    def wait_for(
        self, check: Callable[[str], T], timeout: float, what: str, history: bool = False
    ) -> T:
        """Capture the pane until ``check(screen)`` is truthy; that value. Fails after
        ``timeout`` seconds, showing the last screen."""
        last = [""]

        def shown() -> T:
            last[0] = self.screen(history)
            return check(last[0])

        try:
            return wait_until(shown, timeout, 0.1, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the pane shows:\n{last[0]}") from None

    def kill(self) -> None:
        self.run("kill-session", "-t", self.name, check=False)
        self.run("kill-server", check=False)  # its own server: gone with its last session
        if self.socket is not None:
            self.socket.unlink(missing_ok=True)  # (the server leaves the file behind)


# -- reading the screen -----------------------------------------------------------------


def node_rows(screen: str) -> dict[int, tuple[str, str, str]]:
    """The node rows on screen: index -> (status, cpu%, rss)."""
    return {int(m[1]): (m[2], m[3], m[4]) for m in NODE_ROW.finditer(screen)}


def with_figures(row: tuple[str, str, str]) -> bool:
    status, cpu, _rss = row
    return status == "up" and cpu != MISSING and re.fullmatch(r"\d+(\.\d+)?", cpu) is not None


def view_of(screen: str) -> str | None:
    """The view on screen ("nodes" or "jobs"), from its table's title."""
    title = TITLE.search(screen)
    return title[1].lower() if title else None


def nodes_title(screen: str) -> tuple[int, int] | None:
    """(rows shown, rows in all) from the nodes table's title."""
    title = TITLE.search(screen)
    if not title or title[1] != "Nodes":
        return None
    shown = int(title[2])
    return shown, int(title[3] or shown)


def all_up(screen: str) -> bool:
    summary = UP_SUMMARY.search(screen)
    return summary is not None and summary[1] == summary[2] == str(NODES)


def node_table_shown(screen: str) -> list[int] | None:
    """The rows on screen, if the nodes table lists every node and the rows on screen
    are consecutive from the top (node-0 up) or to the bottom (up to the last node)."""
    rows = sorted(node_rows(screen))
    if nodes_title(screen) != (NODES, NODES) or len(rows) < MIN_ROWS_SHOWN:
        return None
    if rows != list(range(rows[0], rows[0] + len(rows))) or rows[0] not in (0, NODES - len(rows)):
        return None
    return rows


def live_node_table(screen: str) -> list[int] | None:
    """As :func:`node_table_shown`, with figures in every row on screen and every node up."""
    rows = node_table_shown(screen)
    if rows is None or not all_up(screen):
        return None
    shown = node_rows(screen)
    return rows if all(with_figures(shown[i]) for i in rows) else None


def job_state(screen: str, job_id: str) -> str | None:
    """The state the jobs table shows for ``job_id`` (listed by its first group)."""
    row = re.search(rf"^ {re.escape(job_id.split('-', 1)[0])} +(\S+)", screen, re.M)
    return row[1] if row else None


# -- processes ----------------------------------------------------------------------------


def find_launcher(shell_pid: int) -> psutil.Process | None:
    """The ``devstack.cli`` process the pane's shell started (its forked nodes share its
    command line: the launcher is the one whose parent is not one of them)."""
    try:
        for proc in psutil.Process(shell_pid).children(recursive=True):
            if "devstack.cli" in proc.cmdline():
                parent = proc.parent()
                if parent is None or "devstack.cli" not in parent.cmdline():
                    return proc
    except psutil.Error:
        pass
    return None


def find_tui(launcher: psutil.Process) -> psutil.Process | None:
    """The launcher's ``python -m tui`` child."""
    try:
        for proc in launcher.children():
            if proc.cmdline()[1:3] == ["-m", "tui"]:
                return proc
    except psutil.Error:
        pass
    return None


def stop_process(proc: psutil.Process | None, sig: int, timeout: float) -> None:
    """Send ``sig`` to ``proc`` if it still runs (psutil checks it is the same process)
    and wait up to ``timeout`` seconds for it to end."""
    if proc is None:
        return
    try:
        if proc.is_running():
            proc.send_signal(sig)
            proc.wait(timeout)
    except psutil.Error:  # gone already, or still running after the timeout
        pass


@pytest.mark.timeout(900)
def test_devstack_up_50_nodes_in_tmux(tmp_path: Path) -> None:
    if not os.access(TMUX, os.X_OK):
        pytest.skip(f"{TMUX} is not installed")
    docker_client().close()
    state_dir = tmp_path / "devstack"
    stack = Devstack(state_dir=state_dir, nodes=NODES)
    tmux = Tmux()
    launcher: psutil.Process | None = None
    tui: psutil.Process | None = None
    argv = [sys.executable, "-m", "devstack.cli", "--state-dir", str(state_dir)]
    argv += ["up", "--nodes", str(NODES)]
    try:
        shell_pid = tmux.start(argv, cwd=REPO)
        launcher = wait_until(
            lambda: find_launcher(shell_pid), timeout=30, message="the launcher process"
        )

        # The launcher prints its ready line (and the nodes' list, which scrolls the line
        # out of the 40-line pane: read the scrollback too) before it starts the TUI.
        ready = tmux.wait_for(READY.search, UP_TIMEOUT_S, "the launcher's ready line", history=True)
        assert int(ready[1]) == NODES
        state = stack.reload()  # the nodes' pids and peer ids, to check they are gone at the end
        assert state is not None and len(state.nodes) == NODES
        assert state.launcher_pid == launcher.pid
        peer_ids = {n.peer_id for n in state.nodes}
        tui = wait_until(lambda: find_tui(launcher), timeout=30, message="the TUI process")
        top = tmux.wait_for(live_node_table, 60, f"the TUI to show {NODES} rows, up, with figures")
        assert top[0] == 0
        # ctrl+end: the cursor to the last row, which scrolls the rest of the table in
        tmux.send("C-End")
        bottom = tmux.wait_for(
            lambda s: (rows := live_node_table(s)) and rows[-1] == NODES - 1 and rows,
            10,
            f"node-{NODES - 1} at the bottom, with figures",
        )
        assert set(top) | set(bottom) == set(range(NODES))
        tmux.send("C-Home")
        tmux.wait_for(lambda s: (rows := node_table_shown(s)) and rows[0] == 0, 10, "node-0")

        # j and n switch the view, seen from outside the terminal.
        for i in range(KEY_PRESSES):
            key, view = ("j", "jobs") if i % 2 == 0 else ("n", "nodes")
            tmux.send(key)
            tmux.wait_for(lambda s, v=view: view_of(s) == v, 10, f"the {view} view")
        assert view_of(tmux.screen()) == "nodes"
        tmux.wait_for(live_node_table, 30, "the node table still live")

        # The jobs view: a job submitted over HTTP shows up and completes there.
        tmux.send("j")
        tmux.wait_for(lambda s: view_of(s) == "jobs", 10, "the jobs view")
        response = httpx.post(
            f"{state.nodes[0].api}/api/v1/jobs",
            json={"image": "busybox", "command": ["echo", "hello from tmux"]},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        tmux.wait_for(lambda s: job_state(s, job_id), 30, f"job {job_id} listed")
        final = tmux.wait_for(
            lambda s: (ended := job_state(s, job_id)) in TERMINAL and ended,
            JOB_TIMEOUT_S,
            f"job {job_id} to end on screen",
        )
        assert final == "completed", f"job {job_id} ended {final} on screen"

        tmux.send("n")
        tmux.wait_for(node_table_shown, 10, "the nodes view again")

        # `/node-4` leaves node-4 and node-40..49
        tmux.send("/")
        tmux.send("node-4", literal=True)
        wanted = {4, *range(40, 50)}
        tmux.wait_for(
            lambda s: (
                nodes_title(s) == (len(wanted), NODES)
                and 'filter "node-4"' in s
                and set(node_rows(s)) == wanted
            ),
            10,
            "only node-4 and node-40..49",
        )
        tmux.send("Escape")  # clears the filter
        tmux.wait_for(node_table_shown, 10, f"all {NODES} rows back")

        tmux.send("?")
        tmux.wait_for(lambda s: "Help · esc closes" in s, 10, "the help")
        tmux.send("Escape")
        tmux.wait_for(
            lambda s: "Help · esc closes" not in s and node_table_shown(s), 10, "help closed"
        )

        # q asks; y stops the cluster, and the launcher exits.
        tmux.send("q")
        tmux.wait_for(
            lambda s: "Stop the cluster? (y/n)" in s and f"stops its {NODES} nodes" in s,
            10,
            "the stop question",
        )
        tmux.send("y")
        exited = tmux.wait_for(
            EXITED.search, DOWN_TIMEOUT_S + 60, "the launcher to exit", history=True
        )
        last_words = tmux.screen(history=True)
        assert exited[1] == "0", last_words
        assert f"stopped {NODES} nodes" in last_words, last_words
        assert not launcher.is_running() and not tui.is_running()
        assert not st.state_path(state_dir).exists(), "the launcher left cluster.json behind"
        wait_until(lambda: not stack.live_pids(), timeout=30, message="node processes to end")
        assert labelled_containers(peer_ids) == []
    finally:
        # Whatever happened: stop the launcher (SIGINT: it stops its nodes, whether still
        # starting them or showing the TUI), end the tmux session, kill what is left of
        # the processes this test started, and take the cluster down and check it.
        stop_process(launcher, signal.SIGINT, DOWN_TIMEOUT_S)
        tmux.kill()
        for proc in (tui, launcher):
            stop_process(proc, signal.SIGKILL, 10)
        stack.down_and_check()
