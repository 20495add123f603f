"""Fakes of the supervisor's ports (kanban.ports), re-exported by kanban.testing.

They honour the ports' contract on an injected clock (`FakeClock`): a fake agent's `wait`
moves the clock on by its timeout instead of sleeping, exits when its script says, and stops
when the supervisor stops it. Its output lines go into the run's real log, so the real
watcher reads them (usage, cost, auth errors, noise) as it reads a real agent's.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from kanban import agentlog, errors, fsutil, processes, profiles, views
from kanban.ports import Started
from kanban.worktrees import Workspace


@dataclasses.dataclass
class FakeClock:
    """A monotonic clock that moves only when told (or when a fake agent waits)."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclasses.dataclass
class FakeAgent:
    """What one fake agent does: print `output` when it starts; call `during` at its first
    wait (it reports, its card is cancelled, ...); exit with `returncode` after `exits_after`
    seconds of the clock (None: it runs until stopped)."""

    output: Sequence[str] = ()
    exits_after: float | None = 1.0
    returncode: int = 0
    during: Callable[[], None] | None = None
    fails_to_start: errors.SpawnError | None = None


class FakeProcess:
    def __init__(self, pid: int, script: FakeAgent, clock: FakeClock) -> None:
        self.pid, self.script, self.clock = pid, script, clock
        self.returncode: int | None = None
        self.exit_at = None if script.exits_after is None else clock.now + script.exits_after
        self.waits = 0

    def wait(self, timeout: float | None = None) -> int:
        if self.waits == 0 and self.script.during is not None:
            self.script.during()
        self.waits += 1
        if self.returncode is not None:
            return self.returncode
        due = self.exit_at
        if due is not None and (timeout is None or self.clock.now + timeout >= due):
            self.clock.now = max(self.clock.now, due)
            self.returncode = self.script.returncode
            return self.returncode
        if timeout is None:
            raise AssertionError("a fake agent that never exits was waited for, not stopped")
        self.clock.advance(timeout)
        raise subprocess.TimeoutExpired(f"fake agent {self.pid}", timeout)

    def stopped(self) -> None:
        if self.returncode is None:
            self.returncode = -signal.SIGTERM


class FakeRunner:
    """Starts `FakeAgent`s in turn (`agents`); records what it started and stopped."""

    FIRST_PID = 4_000_000  # above any real pid_max: never a real process

    def __init__(self, clock: FakeClock, agents: Sequence[FakeAgent]) -> None:
        self.clock = clock
        self.agents = list(agents)
        self.started: list[tuple[list[str], bytes | None]] = []
        self.stopped: list[int] = []
        self.processes: dict[int, FakeProcess] = {}

    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        stdin: bytes | None,
        log: agentlog.AgentLog,
    ) -> Started:
        script = self.agents.pop(0)
        if script.fails_to_start is not None:
            raise script.fails_to_start
        pid = self.FIRST_PID + len(self.started)
        self.started.append((list(argv), stdin))
        for line in script.output:
            log.write(line.encode() + b"\n")
        process = FakeProcess(pid, script, self.clock)
        self.processes[pid] = process
        return Started(process, processes.Identity(pid=pid, started=0.0))

    def stop(self, identity: processes.Identity, *, grace: float = 5.0) -> bool:
        self.stopped.append(identity.pid)
        self.processes[identity.pid].stopped()
        return True


class FakeWorkspaces:
    """A scratch directory per run, no git; records what the supervisor asked of it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.board_id: str | None = None
        self.calls: list[str] = []

    def prepare(
        self, detail: views.CardDetail, profile: profiles.Profile, *, stop: Callable[[], bool]
    ) -> Workspace:
        self.calls.append("prepare")
        path = fsutil.private_dir(self.root / f"card-{detail.card.id}")
        return Workspace(path=path, branch=None)

    def keep_work(self, workspace: Workspace, *, reason: str) -> None:
        self.calls.append(f"keep_work: {reason}")

    def publish(self, workspace: Workspace) -> str | None:
        self.calls.append("publish")
        return None

    def remove(self, workspace: Workspace) -> None:
        self.calls.append("remove")
