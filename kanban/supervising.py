"""A supervised run's state and its end: watching the agent (kanban.watching) and turning
how it ended into the run's recorded outcome.

`RunState` holds what one supervisor knows of its run and the fenced, patient writes it makes;
`Ending` watches the agent to its end (exit, report, lease lost, board unreachable, timeout,
stall, cost cap), stops it, keeps its work and records the outcome through the one board verb
(board.end_run). kanban.supervisor builds on both: it prepares the workspace and launches
the agent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kanban import (
    agentlog,
    api,
    board,
    channel,
    clock,
    confine,
    errors,
    goals,
    liveness,
    outcomes,
    outputs,
    ports,
    processes,
    profiles,
    retrying,
    settings,
    views,
    watching,
)
from kanban.states import RunOutcome
from kanban.workspace import RunWorkspace
from kanban.worktrees import Workspace

logger = logging.getLogger("kanban.supervisor")
T = TypeVar("T")
DIE_AT_ENV = "KANBAN_TESTING_DIE_AT"  # tests: SIGKILL ourselves on entering this phase

AGENT_REPORT_GRACE = 30.0  # after an agent reports, how long it may take to exit by itself


@dataclasses.dataclass
class RunState:
    """One supervisor's run: who it is, its log, heartbeat, agent and ports."""

    board: api.Board
    card_id: int
    run_id: int
    token: str
    stopping: threading.Event = dataclasses.field(default_factory=threading.Event)
    _log: agentlog.AgentLog | None = None
    _pump: agentlog.Pump | None = None  # the agent's output into the log
    _beat: watching.Heartbeat | None = None
    _agent: processes.Identity | None = None
    # While a resumed session runs: the fresh command and prompt to fall back on.
    _afresh: tuple[list[str], str] | None = None
    _env: dict[str, str] | None = None
    _model: str | None = None  # the card's model for this run
    own_process: bool = False  # a process of its own (not a test's thread): subreaper, reaps
    _channel: channel.Server | None = None
    # The ports (kanban.ports): how the agent is started and stopped, where it works, and
    # the clock its watcher and heartbeat keep time by. Tests give kanban.testing's fakes.
    runner: ports.AgentRunner = dataclasses.field(default_factory=ports.RealRunner)
    workspaces: ports.WorkspacePort | None = None  # default: git worktrees (RunWorkspace)
    clock: Callable[[], float] = time.monotonic
    space: ports.WorkspacePort = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.space = self.workspaces or RunWorkspace(
            self.config, self.card_id, self.run_id, note=self.note
        )

    @property
    def heartbeat(self) -> watching.Heartbeat | None:
        return self._beat

    @property
    def config(self) -> settings.Settings:
        return self.board.settings

    def _unwanted(self) -> bool:
        """The run no longer wants what we are doing: told to stop, or its lease is gone."""
        return self.stopping.is_set() or (self._beat is not None and self._beat.lost.is_set())

    def _stop_beat(self) -> None:
        if self._beat is not None:
            self._beat.stop()

    def _phase(self, phase: str) -> None:
        """Say where we are (a dispatcher reads it if we die here)."""
        liveness.write_phase(self.config.state_dir, self.run_id, phase)
        if _dies_at(os.environ.get(DIE_AT_ENV, ""), card_id=self.card_id) == phase:
            os.kill(os.getpid(), signal.SIGKILL)

    def _write(self, fn: Callable[[Any], T], *, wake: bool = False) -> T:
        """A fenced write, retried while the database is unreachable, full or timing out."""
        return retrying.patiently(
            lambda: self.board.tx.write(fn, wake_dispatcher=wake),
            patience=self.config.db_patience,
            say=self._waiting,
        )

    def _read(self, fn: Callable[[Any], T]) -> T:
        return retrying.patiently(
            lambda: self.board.tx.read(fn), patience=self.config.db_patience, say=self._waiting
        )

    def _waiting(self, text: str) -> None:
        logger.warning("run %s: %s", self.run_id, text)
        self.note(text)

    def note(self, text: str) -> None:
        if self._log is not None:
            stamp = clock.iso(clock.now())
            with contextlib.suppress(OSError):
                self._log.write(f"[kanban] {stamp} {text}\n".encode())
                self._log.flush()

    def _stop_agent(self, identity: processes.Identity, *, grace: float = 5.0) -> None:
        """The agent's process group, then (own process) every descendant left anywhere."""
        self.runner.stop(identity, grace=grace)
        if self.own_process:
            left = confine.stop_descendants(grace=grace, keep=(identity.pid,))
            if left:
                self.note(f"stopped {left} process(es) the agent left outside its group")

    def _tidy(self, workspace: Workspace, outcome: str) -> None:
        if outcome != "done" or workspace.branch is None:
            return
        # (not in review: a person may look at it)
        if self._read(lambda c: board.get_card(c, self.card_id)).status == "done":
            self.space.remove(workspace)


class Ending(RunState):
    """From the launched agent to the recorded outcome."""

    def _start_afresh(
        self,
        returncode: int,
        *,
        profile: profiles.Profile,
        workspace: Workspace,
        log_path: Path,
        timeout: float,
        caps: list[outcomes.Cap] | None,
    ) -> int:
        """A resumed session failed: launch the agent afresh (kanban.supervisor)."""
        raise NotImplementedError

    def watch(
        self,
        agent: ports.AgentProcess,
        identity: processes.Identity,
        *,
        profile: profiles.Profile,
        workspace: Workspace,
        log_path: Path,
        timeout: float,
        start_offset: int,
        caps: list[outcomes.Cap] | None = None,
    ) -> int:
        """Watch the agent (kanban.watching) and turn how it ended into the run's outcome."""
        assert self._beat is not None
        watcher = watching.Watcher(
            agent,
            profile=profile,
            log_path=log_path,
            start_offset=start_offset,
            timeout=timeout,
            caps=caps or [],
            stopping=self.stopping,
            lease_lost=self._beat.lost,
            clock=self.clock,
            model=self._model,
            log=self._log,
            pump=self._pump,
        )
        ended = watcher.watch()
        if ended.why == "lease_lost" and self._beat.unreachable:
            return self.unreachable(agent, identity, workspace, watcher, log_path=log_path)
        if ended.why == "lease_lost":
            return self.lease_lost(agent, identity, workspace, watcher)
        if ended.why != "exited":
            verdict = outcomes.stopped(ended.why, ended.detail, profile=profile, timeout=timeout)
            why = {
                "timeout": f"timeout after {clock.human(timeout)}",
                "stopping": "supervisor stopped (SIGTERM)",
            }.get(ended.why, verdict.error)
            self.note(f"{why}: stopping the agent")
            self._stop_agent(identity)
            agent.wait()
            watcher.finish()
            return self.finish(
                verdict.outcome,
                log_path=log_path,
                workspace=workspace,
                error=verdict.error,
                summary=watcher.report().summary if verdict.outcome is RunOutcome.BLOCKED else None,
                spends_attempt=verdict.spends_attempt,
                usage=watcher,
            )
        returncode = ended.returncode if ended.returncode is not None else -1
        self._phase("exited")
        # The agent is gone; stop whatever it left running, in its process group or not.
        self._stop_agent(identity, grace=1.0)
        self.note(f"agent {processes.exit_description(returncode)}")
        self._keep_session(profile, log_path, start_offset)
        current = self._read(lambda c: board.get_run(c, self.run_id))
        if current is not None and current.outcome is None and returncode != 0 and self._afresh:
            return self._start_afresh(
                returncode,
                profile=profile,
                workspace=workspace,
                log_path=log_path,
                timeout=timeout,
                caps=caps,
            )
        if current is not None and current.outcome is not None:
            self.note(f"the agent reported {current.outcome} before it exited")
            self._record_usage(watcher)
            self.space.keep_work(workspace, reason=f"after the agent reported {current.outcome}")
            if current.outcome == RunOutcome.DONE:
                self.space.publish(workspace)
            self._tidy(workspace, current.outcome)
            return 0
        verdict = outcomes.on_exit(
            profile,
            returncode=returncode,
            report=watcher.report(),
            messages=watcher.reader.messages(),
            now=time.time(),
            auth_line=watcher.auth_line,
        )
        over = outcomes.cap_reached(caps or [], watcher.cost())
        if over is not None and verdict.outcome is not RunOutcome.RATE_LIMITED:
            # Over budget: no retry spends more; a finished run waits for a person's approval.
            ended_as = (
                "finished" if verdict.outcome is RunOutcome.DONE else f"failed ({verdict.error})"
            )
            verdict = outcomes.Verdict(
                RunOutcome.BLOCKED,
                error=f"the agent {ended_as}, but {over}",
                summary=verdict.summary,
                spends_attempt=verdict.outcome is not RunOutcome.DONE,
            )
        return self.finish(
            verdict.outcome,
            log_path=log_path,
            workspace=workspace,
            error=verdict.error,
            summary=verdict.summary,
            exit_code=returncode,
            retry_after=verdict.retry_after,
            spends_attempt=verdict.spends_attempt,
            usage=watcher,
        )

    def lease_lost(
        self,
        agent: ports.AgentProcess,
        identity: processes.Identity,
        workspace: Workspace,
        watcher: watching.Watcher | None = None,
    ) -> int:
        current = self._read(lambda c: board.get_run(c, self.run_id))
        outcome = current.outcome if current is not None else None
        if outcome in ("done", "blocked", "failed"):
            self.note(f"the agent reported {outcome}; waiting for it to exit")
            try:
                code = agent.wait(timeout=AGENT_REPORT_GRACE)
            except subprocess.TimeoutExpired:
                self._stop_agent(identity)
                code = agent.wait()
            self.note(f"agent {processes.exit_description(code)}")
            # Whatever the agent left running goes with it.
            self._stop_agent(identity, grace=1.0)
            if watcher is not None:
                watcher.finish()
                self._record_usage(watcher)
                self._keep_session(watcher.profile, watcher.tail.path, watcher.start_offset)
            self.space.keep_work(workspace, reason=f"after the agent reported {outcome}")
            if outcome == RunOutcome.DONE:
                self.space.publish(workspace)
            self._tidy(workspace, outcome)
            return 0
        self.note(f"lease lost (run {outcome or 'gone'}): stopping the agent")
        self._stop_agent(identity)
        agent.wait()
        if watcher is not None:
            watcher.finish()
            self._record_usage(watcher)
        if outcome == "cancelled":
            self.space.keep_work(workspace, reason="after the card was cancelled")
        return 0

    def unreachable(
        self,
        agent: ports.AgentProcess,
        identity: processes.Identity,
        workspace: Workspace,
        watcher: watching.Watcher,
        *,
        log_path: Path,
    ) -> int:
        """No heartbeat reached the board for a lease TTL: another host may take the card, so
        our agent stops (one live agent per card); its work is committed and the outcome
        recorded when the board answers again (refused if the card was taken meanwhile)."""
        ttl = clock.human(self.config.lease_ttl)
        self.note(f"no heartbeat reached the board for {ttl}: stopping the agent")
        self.runner.stop(identity)
        agent.wait()
        watcher.finish()
        return self.finish(
            RunOutcome.CRASHED,
            log_path=log_path,
            workspace=workspace,
            error=f"the board was unreachable for longer than the lease ({ttl}); the agent "
            "was stopped so that no second agent could start beside it, its work committed",
            spends_attempt=False,
            usage=watcher,
        )

    def _keep_session(self, profile: profiles.Profile, log_path: Path, start: int) -> None:
        """Keep the agent's own session id on the run (fenced by the token, after its end
        too), so that the card's next attempt can resume it."""
        if self._log is not None:
            start = self._log.file_pos(start)  # (the log may have been cut since)
        session = outputs.session_in(profile.output, _log_edges(log_path, start))
        if session is None:
            return
        with contextlib.suppress(errors.LeaseLost):
            self.board.tx.write(
                lambda c: board.record_usage(
                    c,
                    card_id=self.card_id,
                    token=self.token,
                    tokens_in=None,
                    tokens_out=None,
                    cost_usd=None,
                    session_id=session,
                )
            )

    def _record_usage(self, watcher: watching.Watcher) -> None:
        """What the run used, after its outcome was recorded by someone else."""
        report = watcher.report()
        cost = watcher.cost()
        if report.tokens_in is None and report.tokens_out is None and cost is None:
            return
        self.note(f"usage: {outcomes.usage_text(report, cost)}")
        with contextlib.suppress(errors.LeaseLost):
            self._write(
                lambda c: board.record_usage(
                    c,
                    card_id=self.card_id,
                    token=self.token,
                    tokens_in=report.tokens_in,
                    tokens_out=report.tokens_out,
                    cost_usd=cost,
                )
            )

    def finish(
        self,
        outcome: RunOutcome,
        *,
        log_path: Path,
        workspace: Workspace | None = None,
        error: str | None = None,
        summary: str | None = None,
        exit_code: int | None = None,
        retry_after: float | None = None,
        spends_attempt: bool | None = None,
        usage: watching.Watcher | None = None,
    ) -> int:
        """Commit what is left, push a done branch (several hosts), record the outcome and
        usage (fenced by the token), tidy up, wake the dispatcher."""
        if workspace is not None:
            self.space.keep_work(workspace, reason=f"run ended {outcome}")
            if outcome is RunOutcome.DONE and (problem := self.space.publish(workspace)):
                outcome, error = RunOutcome.FAILED, problem
        # The heartbeat goes on until the outcome is recorded: a write that waits for the
        # database must not let the lease lapse meanwhile (it would be reclaimed, and done again).
        report = usage.report() if usage is not None else outputs.Report()
        cost = usage.cost() if usage is not None else None
        if usage is not None and (report.tokens_in is not None or cost is not None):
            self.note(f"usage: {outcomes.usage_text(report, cost)}")
        if self._log is not None and self._log.cut:
            self.note(
                f"{self._log.cut:,} bytes of the agent's output were cut from the middle of "
                f"this log, at the line that says so (max_log_bytes = {self._log.max_bytes:,}: "
                f"the first {self._log.head:,} bytes and the latest are kept)"
            )
        if self._pump is not None and self._pump.lost:
            self.note(f"{self._pump.lost:,} bytes of the agent's output could not be written")
        if usage is not None and usage.tail.cut:
            self.note(
                f"{usage.tail.cut:,} bytes of over-long output lines were not read "
                f"(only the last {usage.tail.max_line:,} bytes of a line are)"
            )
        self.note(f"outcome {outcome}" + (f": {error}" if error else ""))
        result = views.RunResult(
            outcome,
            error=error,
            summary=summary,
            exit_code=exit_code,
            retry_after=retry_after,
            spends_attempt=spends_attempt,
            tokens_in=report.tokens_in,
            tokens_out=report.tokens_out,
            cost_usd=cost,
            log_path=str(log_path),
        )
        self._phase("ending")
        try:
            if outcome is RunOutcome.DONE:  # a planner's plan or a judge's verdict, read now
                card = self.board.get(self.card_id)
                result = goals.with_delivery(self.config, card, self.run_id, result)
            card = self._write(lambda c: _end(c, self, result), wake=True)
        except errors.LeaseLost as exc:
            self._stop_beat()
            run = self._read(lambda c: board.get_run(c, self.run_id))
            if run is not None and run.outcome == outcome and run.ended_at is not None:
                self.note(f"outcome {outcome} recorded (a try whose answer was lost landed)")
            else:
                self.note(f"{exc.message}")
            return 0
        self._stop_beat()
        self._phase("ended")
        self.note(f"card {self.card_id} is now {card.status}")
        if workspace is not None:
            self._tidy(workspace, outcome.value)
        return 0


def _dies_at(spec: str, *, card_id: int) -> str | None:
    """Tests (kanban.testing.die_at): "PHASE" for every card, or "CARD:PHASE,CARD:PHASE"."""
    for item in filter(None, spec.split(",")):
        card, _, phase = item.rpartition(":")
        if not card or card == str(card_id):
            return phase
    return None


_EDGE = 64 * 1024


def _log_edges(path: Path, start: int) -> list[str]:
    """The first and last 64 KiB of what the agent wrote (a session id is said at one end
    or the other), as lines; never the whole of a large log."""
    try:
        with path.open("rb") as fh:
            fh.seek(start)
            head = fh.read(_EDGE)
            size = fh.seek(0, os.SEEK_END)
            tail = b""
            if size - start > 2 * _EDGE:
                fh.seek(size - _EDGE)
                tail = fh.read()
            elif size - start > _EDGE:
                fh.seek(start + _EDGE)
                tail = fh.read()
    except OSError:
        return []
    return (head + tail).decode(errors="replace").splitlines()


def _end(conn: Any, sup: RunState, result: views.RunResult) -> views.CardView:
    board.end_run(
        conn,
        card_id=sup.card_id,
        token=sup.token,
        result=result,
        now=clock.now(),
        backoff=sup.board.backoff,
        actor=f"supervisor:{sup.config.host_id}",
    )
    return board.get_card(conn, sup.card_id)
