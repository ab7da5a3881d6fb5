"""`devstack up --nodes 50` in a real terminal: a tmux pane at 120x40, driven by keys.

The test starts a detached tmux session of its own (its own server socket and a
unique session name) whose pane runs the launcher as a user would, so the launcher
starts 50 nodes, waits until they are ready and then opens the TUI because the pane
is a terminal. Keys go in with ``tmux send-keys``; what the test checks is what
``tmux capture-pane`` shows, polled with deadlines (nothing sleeps to synchronise).

It prints its figures (``pytest -s`` shows them): how long the TUI takes to paint
after the launcher says the cluster is ready, the TUI process's CPU while it watches
the 50 nodes, and the latency of a view switch as seen from outside the terminal.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
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
READY_POLL_S = 0.05  # while waiting for the ready line and the first paint
KEY_POLL_S = 0.02  # while timing a key press
KEY_PRESSES = 10  # j, n, j, n, ...
CPU_WINDOW_S = 30.0
JOB_TIMEOUT_S = 240.0

READY = re.compile(r"devstack ready: (\d+) nodes in ([\d.]+)s")
# The launcher's last line, printed by the pane's shell once the launcher has exited.
EXITED = re.compile(r"launcher exit status (\d+)")
UP_SUMMARY = re.compile(r"(\d+)/(\d+) nodes up")
POLLED = re.compile(r"polled in (\d+) ms")
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
        self,
        check: Callable[[str], T],
        timeout: float,
        what: str,
        interval: float = 0.1,
        history: bool = False,
    ) -> tuple[T, float]:
        """Capture the pane until ``check(screen)`` is truthy: that value, and the
        monotonic time of the capture that showed it. Fails after ``timeout`` seconds,
        showing the last screen."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen(history)
            seen = time.monotonic()
            value = check(text)
            if value:
                return value, seen
            if seen > deadline:
                raise AssertionError(
                    f"timed out after {timeout:g}s waiting for {what}; the pane shows:\n{text}"
                )
            time.sleep(interval)

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


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


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

        # (a) First paint: from the launcher's ready line (it prints it, and the nodes'
        # list, before it starts the TUI) to the TUI's node table. The line scrolls out
        # of the 40-line pane under the list of 50 nodes: read the scrollback too.
        ready, ready_at = tmux.wait_for(
            READY.search,
            UP_TIMEOUT_S,
            "the launcher's ready line",
            interval=READY_POLL_S,
            history=True,
        )
        assert int(ready[1]) == NODES
        load_at_ready = os.getloadavg()[0]
        state = stack.reload()  # the nodes' pids and peer ids, to check they are gone at the end
        assert state is not None and len(state.nodes) == NODES
        assert state.launcher_pid == launcher.pid
        peer_ids = {n.peer_id for n in state.nodes}
        # Each capture is checked for every stage, so one frame can pass several at once.
        stages: dict[str, Callable[[str], object]] = {
            "frame": lambda s: " py-bacalhau devstack · " in s,  # the summary bar
            "table": node_table_shown,
            "live": live_node_table,
        }
        painted: dict[str, float] = {}
        frame_cpu: list[float] = []  # CPU seconds the TUI process had used by its first frame

        def paint_stages(screen: str) -> bool:
            now = time.monotonic()
            for stage, check in stages.items():
                if stage not in painted and check(screen):
                    painted[stage] = now
                    if stage == "frame" and (proc := find_tui(launcher)):
                        frame_cpu.append(sum(proc.cpu_times()[:2]))
            return len(painted) == len(stages)

        tmux.wait_for(
            paint_stages,
            60,
            f"the TUI to paint {NODES} rows, up, with figures",
            interval=READY_POLL_S,
        )
        first_frame, first_table, first_live = (
            painted[stage] - ready_at for stage in ("frame", "table", "live")
        )
        print(
            f"\ndevstack up --nodes {NODES} in tmux {WIDTH}x{HEIGHT}: ready in {ready[2]}s"
            f" (the launcher's figure); load average {load_at_ready:.1f} then"
        )
        print(
            f"(a) first paint after the ready line: the TUI's first frame {ms(first_frame)},"
            f" the node table with {NODES} rows {ms(first_table)}, every row up with figures"
            f" {ms(first_live)} (capture-pane every {ms(READY_POLL_S)}); the TUI process had"
            f" used {ms(frame_cpu[0]) if frame_cpu else '?'} of CPU by its first frame"
        )
        # Generous bounds (a loaded 2-core machine): the figures are reported, not tuned to.
        assert first_table < 30, f"the node table took {first_table:.1f}s after ready"
        tui = wait_until(lambda: find_tui(launcher), timeout=10, message="the TUI process")
        top, _ = tmux.wait_for(live_node_table, 10, "the top rows")
        assert top[0] == 0
        # ctrl+end: the cursor to the last row, which scrolls the rest of the table in
        tmux.send("C-End")
        bottom, _ = tmux.wait_for(
            lambda s: (rows := live_node_table(s)) and rows[-1] == NODES - 1 and rows,
            10,
            f"node-{NODES - 1} at the bottom, with figures",
        )
        assert set(top) | set(bottom) == set(range(NODES))
        tmux.send("C-Home")
        tmux.wait_for(lambda s: (rows := node_table_shown(s)) and rows[0] == 0, 10, "node-0")

        # (b) The TUI's CPU while it watches the 50 nodes (it polls each every 2 s). The
        # screen is read once a second meanwhile (which costs the TUI nothing).
        before, cpu_from = tui.cpu_times(), time.monotonic()
        polled_ms: list[int] = []
        captures: list[float] = []  # how long a capture-pane takes, for (c)
        while (elapsed := time.monotonic() - cpu_from) < CPU_WINDOW_S:
            started = time.monotonic()
            screen = tmux.screen()
            captures.append(time.monotonic() - started)
            if polled := POLLED.search(screen):
                polled_ms.append(int(polled[1]))
            time.sleep(min(1.0, max(0.0, CPU_WINDOW_S - elapsed)))
        after, cpu_to = tui.cpu_times(), time.monotonic()
        cpu_percent = (
            (after.user + after.system - before.user - before.system) / (cpu_to - cpu_from) * 100
        )
        print(
            f"(b) the TUI process watching {NODES} nodes for {CPU_WINDOW_S:.0f}s:"
            f" {cpu_percent:.1f}% of a core; RSS {tui.memory_info().rss / 2**20:.0f} MiB;"
            f" a poll round of every node took {min(polled_ms, default=0)}-"
            f"{max(polled_ms, default=0)} ms (its summary bar)"
        )
        assert cpu_percent < 100
        tmux.wait_for(live_node_table, 30, "the node table still live")

        # (c) Key to effect seen from outside: from just before `tmux send-keys` to the
        # first capture showing the other view. This includes tmux's own work and the
        # cost of a capture-pane (a process each, on a loaded machine) plus up to one
        # 20 ms polling interval, on top of what the app takes.
        latencies: list[float] = []
        for i in range(KEY_PRESSES):
            key, view = ("j", "jobs") if i % 2 == 0 else ("n", "nodes")
            sent = time.monotonic()
            tmux.send(key)
            _, seen = tmux.wait_for(
                lambda s, v=view: view_of(s) == v, 10, f"the {view} view", interval=KEY_POLL_S
            )
            latencies.append(seen - sent)
        assert view_of(tmux.screen()) == "nodes"
        print(
            f"(c) {len(latencies)} view switches (j/n) seen from outside while it polls:"
            f" median {ms(statistics.median(latencies))}, max {ms(max(latencies))}"
            f" (send-keys to capture-pane every {ms(KEY_POLL_S)}; includes tmux's overhead:"
            f" a capture-pane alone took {ms(statistics.median(captures))} median)"
        )
        assert max(latencies) < 3, f"a view switch took {max(latencies):.2f}s to show"

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
        final, _ = tmux.wait_for(
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
        exited, _ = tmux.wait_for(
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
