"""The supervisor's two ports: how it starts and stops an agent, and how it gets a workspace.

The supervisor (kanban.supervisor) is given one of each. Production uses `RealRunner` (a
process group per agent, its output pumped into the bounded log) and
`kanban.workspace.RunWorkspace` (git worktrees); `kanban.testing.FakeRunner` and
`FakeWorkspaces` honour the same contract on an injected clock, so the supervisor's branches
are tested without real agents or sleeps.

The contract of a runner:

- `start` returns the started agent, or raises `errors.SpawnError` (`errors.ProgramMissing`
  when no retry can help). The agent's output lands in `log`; `Started.pump`, when there is
  one, is drained by the watcher once the agent exited.
- `process.wait(timeout)` returns the exit code, or raises `subprocess.TimeoutExpired` after
  `timeout` seconds of the supervisor's clock; `process.wait()` returns once it is gone.
- `stop(identity, grace)` ends the agent's whole process group (TERM, then KILL after
  `grace`) and says whether none of it is left. It never signals what is not the agent's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from kanban import agentlog, processes, profiles, views
from kanban.worktrees import Workspace


class AgentProcess(Protocol):
    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Started:
    process: AgentProcess
    identity: processes.Identity
    pump: agentlog.Pump | None = None


class AgentRunner(Protocol):
    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        stdin: bytes | None,
        log: agentlog.AgentLog,
    ) -> Started: ...

    def stop(self, identity: processes.Identity, *, grace: float = 5.0) -> bool: ...


class RealRunner:
    """A real process: the leader of its own session and group, stdout and stderr through a
    pipe pumped into the run's bounded log, the prompt (if any) on standard input."""

    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        stdin: bytes | None,
        log: agentlog.AgentLog,
    ) -> Started:
        agent = processes.spawn(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,  # pumped into the bounded log (kanban.agentlog)
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        )
        assert agent.stdout is not None
        pump = agentlog.Pump(os.dup(agent.stdout.fileno()), log)
        agent.stdout.close()
        pump.start()
        if stdin is not None and agent.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                agent.stdin.write(stdin)
                agent.stdin.close()
        return Started(agent, processes.Identity.of(agent.pid), pump)

    def stop(self, identity: processes.Identity, *, grace: float = 5.0) -> bool:
        return processes.kill_group(identity, grace=grace)


class WorkspacePort(Protocol):
    """Where the agent works (kanban.workspace.RunWorkspace): prepared before it starts
    (raising errors.MergeConflict, WorktreeError or SpawnError), its leftovers committed
    after, a done branch published (a problem returned), a done card's tree removed."""

    board_id: str | None

    def prepare(
        self, detail: views.CardDetail, profile: profiles.Profile, *, stop: Callable[[], bool]
    ) -> Workspace: ...

    def keep_work(self, workspace: Workspace, *, reason: str) -> None: ...

    def publish(self, workspace: Workspace) -> str | None: ...

    def remove(self, workspace: Workspace) -> None: ...
