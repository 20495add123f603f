"""The supervisor: one small detached process per run.

    python -m kanban.supervisor --card 12 --run 40      (token and board on standard input)

It prepares the card's workspace, starts the agent in its own process group with the
profile's environment and the KANBAN_* variables, writes the agent's output to the run's log,
renews the lease with the run's token, enforces the timeout, stops the agent when the lease is
lost, and decides the outcome from the agent's own report or its exit code. The agent reaches
the board only through this process: a private socket (kanban.channel) scoped to its card.
Leftover changes are committed to the card's branch so no work is lost. Ending the run wakes
the dispatcher.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

from kanban import (
    agentlog,
    agentverbs,
    api,
    board,
    channel,
    clock,
    confine,
    errors,
    fsutil,
    goals,
    liveness,
    outcomes,
    outputs,
    ports,
    processes,
    profiles,
    prompt,
    retrying,
    sandbox,
    settings,
    views,
    watching,
    worktrees,
)
from kanban.states import RunOutcome
from kanban.workspace import RunWorkspace
from kanban.worktrees import Workspace

logger = logging.getLogger(__name__)
T = TypeVar("T")
DIE_AT_ENV = "KANBAN_TESTING_DIE_AT"  # tests: SIGKILL ourselves on entering this phase

AGENT_REPORT_GRACE = 30.0  # after an agent reports, how long it may take to exit by itself
KANBAN_VARS = (
    "KANBAN_CARD_ID",
    "KANBAN_RUN_ID",
    channel.ENV,
    "KANBAN_BIN",
    "KANBAN_WORKTREE",
    "KANBAN_BRANCH",
    "KANBAN_PROMPT_FILE",
    "KANBAN_ATTEMPT",
)


def agent_env(
    profile: profiles.Profile, parent: Mapping[str, str], kanban: Mapping[str, str]
) -> dict[str, str]:
    """The profile's allow-list from `parent` (a trailing * allows a prefix), the profile's own
    variables, and the KANBAN_* run variables. Nothing else of the dispatcher's passes on."""
    env = confine.allowed(parent, profile.env_allow)
    for key in list(env):
        if key.startswith("KANBAN_"):
            del env[key]  # the run's own KANBAN_* values only (set below)
    env.update(profile.env)
    env.update(kanban)
    # The agent reports with `kanban`: make sure the one running this board is found first.
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH") or os.defpath])
    return env


def kanban_bin() -> str:
    """The absolute path of the `kanban` that runs this board (told to the agent)."""
    beside = Path(sys.executable).parent / "kanban"
    return str(beside) if beside.exists() else "kanban"


def write_mcp_config(run_dir: Path, *, socket: Path, card_id: int) -> Path:
    """`{mcp_config}`: `kanban mcp` registered as the run's MCP server (the `mcpServers` JSON
    Claude Code's --mcp-config reads), with the run's socket in its environment."""
    path = run_dir / "mcp.json"
    server = {
        "type": "stdio",
        "command": kanban_bin(),
        "args": ["mcp"],
        "env": {channel.ENV: str(socket), "KANBAN_CARD_ID": str(card_id)},
    }
    fsutil.write_private(path, json.dumps({"mcpServers": {"kanban": server}}, indent=2))
    return path


@dataclasses.dataclass
class Supervisor:
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

    # ------------------------------------------------------------------ the run

    def run(self) -> int:
        me = processes.Identity.of(os.getpid())
        try:
            self._write(
                lambda c: _record(
                    c,
                    self,
                    supervisor_pid=me.pid,
                    supervisor_started=me.started,
                    ttl=self.config.lease_ttl,
                )
            )
        except errors.LeaseLost:
            return 0  # the run ended before we started (cancelled): nothing to do
        self._phase("checked_in")
        self._beat = watching.Heartbeat(
            self.board,
            self.card_id,
            self.token,
            self.config.heartbeat_interval,
            ttl=self.config.lease_ttl,
            clock=self.clock,
        )
        self._beat.start()
        try:
            return self._run()
        finally:
            self._beat.stop()
            if self._channel is not None:
                self._channel.close()
            if self.own_process:  # whatever of the agent's is left, in any session or group
                confine.stop_descendants(grace=1.0)
            self._release()
            if self._pump is not None:
                self._pump.stop()
            if self._log is not None:
                self._log.close()

    def _release(self) -> None:
        """Our agent is gone (or never started): the card's next run may start."""
        if self._agent is not None and not self.runner.stop(self._agent, grace=1.0):
            self.note(f"agent group {self._agent.pid} would not stop; the run is not released")
            return
        with contextlib.suppress(errors.KanbanError):
            released = self._write(
                lambda c: board.releases.release_run(
                    c, run_id=self.run_id, token=self.token, now=clock.now(), how="supervisor"
                ),
                wake=True,
            )
            if released:
                self.note("no process of this run is left: the card may run again")

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

    def _run(self) -> int:
        assert self._beat is not None
        detail = self._read(lambda c: board.card_detail(c, self.card_id))
        run = next(r for r in detail.runs if r.id == self.run_id)
        log_path = self.config.log_dir / f"card-{self.card_id}-run-{self.run_id}.log"
        try:
            self._log = agentlog.AgentLog(log_path, max_bytes=self.config.max_log_bytes)
            header = (
                f"run {self.run_id} of card {self.card_id}, attempt {run.attempt} "
                f"(budget {run.max_attempts}) on {self.config.host_id}"
            )
            self._log.write(f"[kanban] {clock.iso(clock.now())} {header}\n".encode())
        except OSError as exc:
            # No log means no record of what the agent did: do not start it (nothing lost).
            return self.finish(
                RunOutcome.SPAWN_FAILED,
                log_path=log_path,
                error=f"cannot write the run's log in {log_path.parent}: {exc.strerror}; "
                "free space there, then `kanban retry` the card",
            )
        self._phase("preparing")
        self.space.board_id = self._read(board.releases.board_id)
        try:
            profile = self._profile(detail.card)
            workspace = self.space.prepare(detail, profile, stop=self._unwanted)
        except errors.MergeConflict as exc:
            return self.finish(RunOutcome.BLOCKED, error=exc.message, log_path=log_path)
        except (errors.ProfileError, errors.WorktreeError, errors.SpawnError) as exc:
            if isinstance(exc, errors.WorktreeError) and self._unwanted():
                self.note(f"preparing stopped ({exc.message}); the agent was not started")
                return 0
            outcome, error, spends = _spawn_failure(exc, exc.message)
            return self.finish(outcome, error=error, spends_attempt=spends, log_path=log_path)
        caps = self._caps(detail.card, profile)
        over = outcomes.cap_reached(caps, 0.0, when="before this run started")
        if over is not None:
            return self.finish(RunOutcome.BLOCKED, error=over, log_path=log_path)

        if self._beat.lost.is_set() or self.stopping.is_set():
            self.note("lease lost while preparing; the agent was not started")
            return 0
        run_dir = goals.run_dir(self.config.state_dir, self.run_id)
        fsutil.private_dir(run_dir)
        prompt_file = run_dir / "prompt.md"
        text = prompt.render(
            detail,
            persona=profile.persona,
            branch=workspace.branch,
            worktree=str(workspace.path),
            attempt=run.attempt,
        )
        fsutil.write_private(prompt_file, text)
        socket_path = self._open_channel(run_dir)
        mcp_config = write_mcp_config(run_dir, socket=socket_path, card_id=self.card_id)
        kanban_vars = {
            "KANBAN_CARD_ID": str(self.card_id),
            "KANBAN_RUN_ID": str(self.run_id),
            channel.ENV: str(socket_path),
            "KANBAN_BIN": kanban_bin(),
            "KANBAN_WORKTREE": str(workspace.path),
            "KANBAN_BRANCH": workspace.branch or "",
            "KANBAN_PROMPT_FILE": str(prompt_file),
            "KANBAN_ATTEMPT": str(run.attempt),
            **goals.agent_vars(detail.card, run_dir),  # a goal's planner or judge: its file
            liveness.MARK_ENV: liveness.mark(self.token),  # finds the agent if we die
        }
        values = {
            "prompt": text,
            "prompt_file": str(prompt_file),
            "card_id": str(self.card_id),
            "run_id": str(self.run_id),
            "attempt": str(run.attempt),
            "title": detail.card.title,
            "worktree": str(workspace.path),
            "branch": workspace.branch or "",
            **_git_placeholders(workspace.path),
            "run_dir": str(run_dir),
            "kanban": kanban_bin(),
            "socket": str(socket_path),
            "mcp_config": str(mcp_config),
        }
        card = detail.card
        self._model = card.model
        argv = profile.argv(values, model=card.model, extra=card.agent_args)
        session = resumable_session(detail, profile, run_id=self.run_id)
        if session is not None:
            # The card came back to the same agent: go on with its own conversation, the
            # answer or note as the next message; a failed resume starts afresh (see watch).
            self._afresh = (argv, text)
            text = prompt.render_resume(detail, since=session.run)
            argv = profile.argv(
                {**values, "prompt": text},
                model=card.model,
                extra=card.agent_args,
                session=session.id,
            )
            self.note(f"resuming the agent's session {session.id} of run {session.run.id}")
        env = {**agent_env(profile, os.environ, kanban_vars), **card.agent_env}
        if profile.sandbox == "bwrap":
            try:
                argv = sandbox.wrap(argv, self._mounts(profile, workspace.path, run_dir, env))
            except errors.SpawnError as exc:
                message = f"{exc.message} (profile {profile.name})"
                return self.finish(
                    RunOutcome.SPAWN_FAILED, error=message, log_path=log_path, workspace=workspace
                )
        self.note(
            f"profile {profile.name}: {argv[0]} in {workspace.path}"
            + (f" (model {card.model})" if card.model else "")
            + (f" with {' '.join(card.agent_args)}" if card.agent_args else "")
            + (f"; card sets {', '.join(sorted(card.agent_env))}" if card.agent_env else "")
        )
        self._env = env
        timeout = detail.card.timeout or profile.timeout
        recorded = {
            "worktree": str(workspace.path),
            "branch": workspace.branch,
            "log_path": str(log_path),
            "started_at": clock.now(),
            "model": card.model,
        }
        return self._launch(
            argv,
            text,
            profile=profile,
            workspace=workspace,
            log_path=log_path,
            timeout=timeout,
            caps=caps,
            recorded=recorded,
        )

    def _launch(
        self,
        argv: list[str],
        text: str,
        *,
        profile: profiles.Profile,
        workspace: Workspace,
        log_path: Path,
        timeout: float,
        caps: list[outcomes.Cap] | None,
        recorded: Mapping[str, Any],
    ) -> int:
        """Start the agent in its own process group, record who it is (fenced by the token,
        with `recorded`), and watch it to its end."""
        assert self._log is not None
        assert self._env is not None
        start_offset = self._log.written
        if self._pump is not None:  # a resumed session's agent is gone: its pipe too
            self._pump.stop()
            self._pump = None
        self._phase("spawning")
        try:
            started = self.runner.start(
                argv,
                cwd=workspace.path,
                env=self._env,
                stdin=text.encode() if profile.prompt == "stdin" else None,
                log=self._log,
            )
        except errors.SpawnError as exc:
            message = f"{exc.message} (profile {profile.name}; install it or fix `command`)"
            outcome, error, spends = _spawn_failure(exc, message)
            return self.finish(
                outcome, error=error, spends_attempt=spends, log_path=log_path, workspace=workspace
            )
        agent, identity, self._pump = started.process, started.identity, started.pump
        self._agent = identity
        self._phase("spawned")  # the agent runs and is not recorded yet
        try:
            self._write(
                lambda c: _record(
                    c, self, pid=identity.pid, pid_started=identity.started, **recorded
                )
            )
        except errors.LeaseLost:
            self._stop_agent(identity)
            return 0
        self._phase("watching")
        return self.watch(
            agent,
            identity,
            profile=profile,
            workspace=workspace,
            log_path=log_path,
            timeout=timeout,
            start_offset=start_offset,
            caps=caps,
        )

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
        """The resumed session failed without a word to the board: same attempt, the whole
        prompt, a fresh session; the log says so."""
        assert self._afresh is not None
        assert self._env is not None
        assert self._log is not None
        argv, text = self._afresh
        self._afresh = None
        self.note(
            f"resuming the session failed ({processes.exit_description(returncode)}): "
            "starting the agent afresh with the whole prompt"
        )
        return self._launch(
            argv,
            text,
            profile=profile,
            workspace=workspace,
            log_path=log_path,
            timeout=timeout,
            caps=caps,
            recorded={},
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

    # ------------------------------------------------------------------ pieces

    def _open_channel(self, run_dir: Path) -> Path:
        """Serve the agent's socket (kanban.channel) in the run's private directory."""
        verbs = agentverbs.RunVerbs(
            self.board, self.card_id, self.run_id, self.token, note=self.note, on_end=self._ended
        )
        self._channel = channel.Server(
            run_dir / channel.SOCKET_NAME,
            card_id=self.card_id,
            handle=verbs,
            note=self.note,
            is_agent=_is_descendant,
        )
        return self._channel.start()

    def _mounts(
        self, profile: profiles.Profile, worktree: Path, run_dir: Path, env: Mapping[str, str]
    ) -> sandbox.Mounts:
        return sandbox.Mounts(
            worktree=worktree,
            run_dir=run_dir,
            state_dir=self.config.state_dir,
            worktrees_root=self.config.worktrees,
            git_dir=sandbox.git_common_dir(worktree),
            home=Path(env["HOME"]) if env.get("HOME") else None,
            network=profile.network,
        )

    def _ended(self, outcome: str) -> None:
        """The agent reported its outcome: later writes are refused, the watcher stops."""
        if self._channel is not None:
            self._channel.ended = outcome
        if self._beat is not None:
            self._beat.lost.set()

    def _stop_agent(self, identity: processes.Identity, *, grace: float = 5.0) -> None:
        """The agent's process group, then (own process) every descendant left anywhere."""
        self.runner.stop(identity, grace=grace)
        if self.own_process:
            left = confine.stop_descendants(grace=grace, keep=(identity.pid,))
            if left:
                self.note(f"stopped {left} process(es) the agent left outside its group")

    def note(self, text: str) -> None:
        if self._log is not None:
            stamp = clock.iso(clock.now())
            with contextlib.suppress(OSError):
                self._log.write(f"[kanban] {stamp} {text}\n".encode())
                self._log.flush()

    def _caps(self, card: views.CardView, profile: profiles.Profile) -> list[outcomes.Cap]:
        """The cost caps this run must stay under, with what was spent before it started: the
        card's own cap (else its profile's), and its goal's budget."""
        limit, mine = card.max_cost_usd or profile.max_cost_usd, card.max_cost_usd is not None
        label = f"card {card.id}'s cap" if mine else f"profile {profile.name}'s cap per card"
        hint = f"raise it with `kanban cap {card.id} USD`, then `kanban unblock {card.id}`"

        def read(conn: Any) -> list[outcomes.Cap]:
            caps = []
            if limit is not None:
                spent = board.spend(conn, card_ids=[card.id], exclude_run=self.run_id)
                caps.append(outcomes.Cap(label, limit, spent.cost_usd, hint))
            goal = board.goals.get_goal(conn, card.goal_id) if card.goal_id else None
            if goal is not None and goal.max_cost_usd is not None:
                spent = board.goal_spend(conn, goal.id, exclude_run=self.run_id)
                caps.append(
                    outcomes.Cap(f"goal {goal.id}'s budget", goal.max_cost_usd, spent.cost_usd)
                )
            return caps

        return self._read(read)

    def _profile(self, card: views.CardView) -> profiles.Profile:
        if not card.profile:
            raise errors.ProfileError(f"card {card.id} has no profile; set one with --profile")
        return profiles.load(card.profile, repo=self.config.repo)

    def _tidy(self, workspace: Workspace, outcome: str) -> None:
        if outcome != "done" or workspace.branch is None:
            return
        # (not in review: a person may look at it)
        if self._read(lambda c: board.get_card(c, self.card_id)).status == "done":
            self.space.remove(workspace)


def _dies_at(spec: str, *, card_id: int) -> str | None:
    """Tests (kanban.testing.die_at): "PHASE" for every card, or "CARD:PHASE,CARD:PHASE"."""
    for item in filter(None, spec.split(",")):
        card, _, phase = item.rpartition(":")
        if not card or card == str(card_id):
            return phase
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    id: str
    run: views.RunView  # the earlier run whose agent had it


def resumable_session(
    detail: views.CardDetail, profile: profiles.Profile, *, run_id: int
) -> Session | None:
    """The session to resume for this attempt: the card's latest earlier run of the same
    profile that kept one, when the profile knows how to resume. None: start afresh."""
    if not profile.resume:
        return None
    earlier = [r for r in detail.runs if r.id != run_id and r.outcome is not None]
    if not earlier:
        return None
    last = max(earlier, key=lambda r: r.id)
    if last.session_id is None or last.profile != profile.name:
        return None
    return Session(last.session_id, last)


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


def _git_placeholders(path: Path) -> dict[str, str]:
    """{git_dir} and {git_common_dir}: what an agent's own sandbox must let it write to commit
    in a linked worktree (Codex's `--add-dir`); the workspace itself outside git."""
    dirs = worktrees.git_dirs(path)
    own, common = dirs if dirs is not None else (path, path)
    return {"git_dir": str(own), "git_common_dir": str(common)}


def _spawn_failure(exc: errors.KanbanError, message: str) -> tuple[RunOutcome, str, bool | None]:
    """A failure before the agent ran: retried with backoff, unless no retry can fix it
    (errors.Permanent): then blocked at once, the fix in the reason, one attempt spent."""
    if isinstance(exc, errors.Permanent):
        return RunOutcome.BLOCKED, f"{message}; then `kanban unblock`", True
    return RunOutcome.SPAWN_FAILED, message, None


def _record(
    conn: Any, sup: Supervisor, *, ttl: float | None = None, **fields: Any
) -> views.RunView:
    return board.record_start(
        conn, card_id=sup.card_id, token=sup.token, now=clock.now(), ttl=ttl, **fields
    )


def _end(conn: Any, sup: Supervisor, result: views.RunResult) -> views.CardView:
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


def _is_descendant(pid: int) -> bool:
    """`pid` is this process or below it (the agent, or anything it started: orphans come back
    to this process, a child subreaper)."""
    return pid == os.getpid() or any(p.pid == pid for p in confine.descendants())


def read_secrets(stream: IO[str]) -> dict[str, str]:
    """The token and board the dispatcher hands over on standard input (one JSON line), so
    neither is in this process's environment for anyone to read."""
    try:
        found = json.loads(stream.readline() or "{}")
    except ValueError:
        found = {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def main(argv: list[str] | None = None, *, secrets: dict[str, str] | None = None) -> int:
    """A supervisor process: `secrets` (KANBAN_TOKEN, KANBAN_DB) from a fork server's
    request (kanban.forkserver), else from standard input."""
    confine.harden()  # first: nothing of this process is readable by the agent from now on
    parser = argparse.ArgumentParser(prog="kanban-supervisor", description=__doc__)
    parser.add_argument("--card", type=int, required=True)
    parser.add_argument("--run", type=int, required=True)
    args = parser.parse_args(argv)
    if secrets is None:
        secrets = read_secrets(sys.stdin)
    token = secrets.get("KANBAN_TOKEN", "")
    if not token:
        parser.error("no token on standard input (the dispatcher starts supervisors)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s supervisor %(process)d %(message)s")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    # The board may be unreachable for a while (a restart, a full disk): wait for it rather
    # than leave the run to be recorded as a supervisor that failed to start.
    config = settings.load({"db": secrets["KANBAN_DB"]} if secrets.get("KANBAN_DB") else {})
    opened = retrying.patiently(
        lambda: api.connect(config, create=False), patience=config.db_patience, say=logger.warning
    )
    with opened as board:
        return Supervisor(
            board,
            card_id=args.card,
            run_id=args.run,
            token=token,
            stopping=stopping,
            own_process=True,
        ).run()


if __name__ == "__main__":
    sys.exit(main())
