"""Is any process of a run still alive? One live agent per card rests on the answer.

The supervisor says where it is in the run's life in `<state>/runs/<run>/phase` (written
before each step, so a supervisor killed between two steps left the name of the step it was
in), and starts its agent with `KANBAN_RUN_MARK` (a hash of the run's token, so it names one
run of one board and opens nothing) in the agent's environment. A supervisor killed before it
recorded the agent's pid therefore still leaves a way to find the agent: the mark, read from
the environment of this host's processes. A dispatcher stops what it finds, confirms it gone
by identity (host, pid, start time), and only then says the run is released.

`processes` knows nothing of runs; this module joins the two. It never imports `board`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import signal
import time
from pathlib import Path

import psutil

from kanban import fsutil, processes, views

logger = logging.getLogger(__name__)

MARK_ENV = "KANBAN_RUN_MARK"
# The phases of a supervisor's life, in order (kanban.testing.die_at stops one at each).
PHASES = (
    "checked_in",
    "preparing",
    "spawning",
    "spawned",
    "watching",
    "exited",
    "ending",
    "ended",
)
_PHASE_TEXT = {
    "checked_in": "after it checked in, before preparing the worktree",
    "preparing": "while preparing the worktree",
    "spawning": "while starting the agent",
    "spawned": "after starting the agent, before recording it",
    "watching": "while watching the agent",
    "exited": "after the agent exited, before recording the outcome",
    "ending": "while recording the outcome",
    "ended": "after recording the outcome",
}


def mark(token: str) -> str:
    return hashlib.sha256(f"kanban-run:{token}".encode()).hexdigest()[:24]


def phase_file(state_dir: Path, run_id: int) -> Path:
    return state_dir / "runs" / str(run_id) / "phase"


def write_phase(state_dir: Path, run_id: int, phase: str) -> None:
    with contextlib.suppress(OSError):  # a full disk must not stop the run; it only says less
        fsutil.write_private(phase_file(state_dir, run_id), phase)


def read_phase(state_dir: Path, run_id: int) -> str | None:
    try:
        text = phase_file(state_dir, run_id).read_text().strip()
    except OSError:
        return None
    return text if text in _PHASE_TEXT else None


def phase_text(phase: str | None) -> str:
    return _PHASE_TEXT.get(phase or "", "at an unknown point")


def marked(token: str) -> list[psutil.Process]:
    """This host's processes started for the run holding `token` (by their environment)."""
    want = mark(token)
    found = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            if proc.environ().get(MARK_ENV) == want and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class Settled:
    gone: bool  # no process of the run is alive any more
    stopped: list[int]  # pids of agents found alive and stopped
    phase: str | None

    def describe(self, run: views.RunView) -> str:
        """What really happened, for the run's error."""
        where = phase_text(self.phase)
        sup = f"its supervisor (pid {run.supervisor_pid}) died {where}"
        if self.stopped:
            pids = ", ".join(map(str, self.stopped))
            return f"{sup}; its agent (pid {pids}) was found running and stopped"
        if run.pid is not None:
            return f"{sup}; its agent (pid {run.pid}) had already exited"
        return f"{sup}; no agent of the run was running"


def settle(run: views.RunView, *, token: str, state_dir: Path) -> Settled:
    """Stop every agent of `run` (this host's, its supervisor gone) and confirm it gone."""
    stopped: list[int] = []
    gone = True
    if run.pid is not None and run.pid_started is not None:
        leader = processes.Identity(run.pid, run.pid_started)
        if processes.state(leader) == "alive" or processes.group_members(leader.pid):
            stopped.append(leader.pid)
            gone &= processes.kill_group(leader)
    found = marked(token)
    for proc in found:
        if proc.pid not in stopped:
            stopped.append(proc.pid)
        _kill(proc)
    deadline = time.monotonic() + 5.0
    while found and time.monotonic() < deadline:
        time.sleep(0.05)
        found = marked(token)
    gone &= not found
    return Settled(gone=gone, stopped=sorted(stopped), phase=read_phase(state_dir, run.id))


def _kill(proc: psutil.Process) -> None:
    """SIGKILL a marked process and its process group (an agent leads its own group)."""
    with contextlib.suppress(psutil.Error, OSError):
        pgid = os.getpgid(proc.pid)
        if pgid > 1 and pgid != os.getpgid(0):
            os.killpg(pgid, signal.SIGKILL)
        proc.kill()
