"""The supervisor: one small detached process per run.

    python -m kanban.supervisor --card 12 --run 40      (token and board on standard input)

It prepares the card's workspace, starts the agent in its own process group with the
profile's environment and the KANBAN_* variables, writes the agent's output to the run's log,
renews the lease with the run's token, enforces the timeout, stops the agent when the lease is
lost, and decides the outcome from the agent's own report or its exit code. The agent reaches
the board only through this process: a private socket (kanban.channel) scoped to its card.
Leftover changes are committed to the card's branch so no work is lost. Ending the run wakes
the dispatcher.

This module prepares and launches; the run's state and its end (watching the agent, stopping
it, recording the outcome) are kanban.supervising's.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

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
    gitrun,
    goals,
    liveness,
    outcomes,
    processes,
    profiles,
    prompt,
    retrying,
    sandbox,
    settings,
    supervising,
    views,
    watching,
)
from kanban.states import RunOutcome
from kanban.supervising import DIE_AT_ENV as DIE_AT_ENV  # (known from here)
from kanban.worktrees import Workspace

logger = logging.getLogger(__name__)

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


class Supervisor(supervising.Ending):
    """Prepares the run's workspace and prompt, launches the agent, releases the run."""

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


def _git_placeholders(path: Path) -> dict[str, str]:
    """{git_dir} and {git_common_dir}: what an agent's own sandbox must let it write to commit
    in a linked worktree (Codex's `--add-dir`); the workspace itself outside git."""
    dirs = gitrun.git_dirs(path)
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
