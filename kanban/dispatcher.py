"""The dispatcher: one tick turns the board into running agents; the loop runs ticks.

A tick is defined here and nowhere else (`Dispatcher.tick`). Its standard steps, in order
(`STEPS`), each with a typed result in the `TickReport`:

    reap      close runs whose supervisor died (`crashed`), forget exited supervisors
    reclaim   expired leases: this host's processes killed first, confirmed dead, then
              requeued; other hosts' runs requeued after the TTL
    timeouts  runs past their timeout (`timed_out`)
    promote   cards whose parents are done (a backstop: completions promote at once)
    schedules due cron fires (`Schedules.fire_due`)           -> TickReport.schedules
    goals     goals moved along (`Goals.advance`)               -> TickReport.goals
    claim     what capacity allows (`planning.plan`), committed, then supervisors started

then the dispatcher's own heartbeat. A `Dispatcher` built anywhere (the CLI, `kanban demo`,
a test, your code) runs every step; the CLI only passes options.

The loop ticks every `interval` (APScheduler 3) and at once when a write wakes it (a local
socket for SQLite, LISTEN/NOTIFY for PostgreSQL), and at the next moment something is due
(a backoff ending, a lease expiring). Ticks never overlap: a file lock in the board's state
directory serialises this process and any `kanban dispatch --once` from cron.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kanban import (
    api,
    board,
    clock,
    confine,
    cron,
    errors,
    forkserver,
    fsutil,
    goals,
    liveness,
    planning,
    processes,
    profiles,
    retrying,
    schedules,
    snapshots,
    views,
    wake,
)
from kanban.__about__ import __version__
from kanban.states import RunOutcome

logger = logging.getLogger(__name__)
T = TypeVar("T")

FULL_PROMOTE_EVERY = 600.0  # completions promote their children at once; this is the backstop
TIMEOUT_GRACE = 30.0  # the supervisor enforces timeouts; the dispatcher steps in after this
SPAWN_GRACE = 60.0  # a supervisor that has not checked in by then is treated as lost

STEPS = ("reap", "reclaim", "timeouts", "promote", "schedules", "goals", "claim")

# An extra tick hook (beyond the standard steps) runs after the goal step and before claiming.
# It may return `next_due` (a datetime) to have the loop tick again then.
TickHook = Callable[[api.Board, dt.datetime], Mapping[str, Any]]


@dataclasses.dataclass
class TickReport:
    """What one tick did, step by step (card ids per list)."""

    started: dt.datetime
    crashed: list[int] = dataclasses.field(default_factory=list)  # reap
    reclaimed: list[int] = dataclasses.field(default_factory=list)  # reclaim
    timed_out: list[int] = dataclasses.field(default_factory=list)  # timeouts
    promoted: list[int] = dataclasses.field(default_factory=list)  # promote
    schedules: schedules.Fires = dataclasses.field(default_factory=schedules.Fires)
    goals: goals.Advance = dataclasses.field(default_factory=goals.Advance)
    claimed: list[int] = dataclasses.field(default_factory=list)  # claim
    spawn_failed: list[int] = dataclasses.field(default_factory=list)
    waiting: int = 0
    hooks: dict[str, Any] = dataclasses.field(default_factory=dict)  # extra hooks' results
    next_due: dt.datetime | None = None
    duration_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The JSON of `dispatch --once --json`; schedules and goals stay under "hooks"."""
        data = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("schedules", "goals")
        }
        data["started"] = clock.iso(self.started)
        data["next_due"] = clock.iso(self.next_due)
        data["hooks"] = {
            "schedules": self.schedules.to_json(),
            "goals": self.goals.to_json(),
            **views.jsonable(self.hooks),
        }
        return data

    @property
    def busy(self) -> bool:
        return bool(
            self.crashed
            or self.reclaimed
            or self.timed_out
            or self.claimed
            or self.spawn_failed
            or self.promoted
        )


class TickLock:
    """An exclusive lock on `<state dir>/dispatch.lock`, held for the length of one tick."""

    def __init__(self, state_dir: Path) -> None:
        fsutil.private_dir(state_dir)
        self.path = state_dir / "dispatch.lock"

    @contextlib.contextmanager
    def hold(self, timeout: float = 300.0) -> Iterator[None]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise errors.KanbanError(
                            f"another dispatcher tick has held {self.path} for {timeout:.0f}s"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def settings_env(board_: api.Board) -> dict[str, str]:
    """The settings a supervisor must share with its dispatcher, as KANBAN_* variables."""
    s = board_.settings
    env = {
        "KANBAN_DB": s.db_url,  # handed over on standard input (processes.PRIVATE_VARS)
        "KANBAN_BOARD": board_label(s.db_url),
        "KANBAN_HOST_ID": s.host_id,
        "KANBAN_LEASE_TTL": str(s.lease_ttl),
        "KANBAN_HEARTBEAT_INTERVAL": str(s.heartbeat_interval),
        "KANBAN_BACKOFF_BASE": str(s.backoff_base),
        "KANBAN_BACKOFF_CAP": str(s.backoff_cap),
        "KANBAN_MAX_ATTEMPTS": str(s.max_attempts),
        "KANBAN_WORKTREE_ROOT": str(s.worktrees),
        "KANBAN_DB_PATIENCE": str(s.db_patience),
        "KANBAN_PREP_TIMEOUT": str(s.prep_timeout),
        "KANBAN_SPARSE_WORKTREES": "true" if s.sparse_worktrees else "false",
        "KANBAN_REUSE_WORKTREES": "true" if s.reuse_worktrees else "false",
        "KANBAN_MAX_LOG_BYTES": str(s.max_log_bytes),
    }
    if s.repo is not None:
        env["KANBAN_REPO"] = str(s.repo)
    if s.base_branch:
        env["KANBAN_BASE_BRANCH"] = s.base_branch
    if s.remote:
        env["KANBAN_REMOTE"] = s.remote
    return env


def board_label(url: str) -> str:
    """The board's URL without its password: names a supervisor's board (`ps`, tests)."""
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


@dataclasses.dataclass(frozen=True, slots=True)
class BoardIdentity:
    """What the dispatcher started on: the board's id, and for SQLite the file itself."""

    board_id: str
    path: Path | None
    inode: tuple[int, int] | None

    @classmethod
    def of(cls, board_: api.Board) -> BoardIdentity:
        from kanban import db

        path = db.sqlite_path(board_.settings.db_url)
        inode = None
        if path is not None:
            st = path.stat()
            inode = (st.st_dev, st.st_ino)
        return cls(board_id=board_.tx.read(board.releases.board_id), path=path, inode=inode)

    def check(self, board_: api.Board, read: Callable[[Any], T] | None = None) -> T | None:
        """Raise BoardGone when the board was deleted or replaced since we started. `read`
        runs in the same read transaction, after the board's id (one round trip less for
        the tick's first reads); its result is returned."""
        if self.path is not None:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                raise self._gone("was deleted") from None
            if (st.st_dev, st.st_ino) != self.inode:
                raise self._gone("was replaced by another file")
        found: list[str] = []

        def both(conn: Any) -> T | None:
            found.clear()  # a retried attempt starts again
            found.append(board.releases.board_id(conn))
            return read(conn) if read is not None and found[0] == self.board_id else None

        try:
            result = board_.tx.read(both)
        except (errors.SchemaError, errors.DatabaseError) as exc:
            if retrying.is_transient_db_error(exc) or found:
                raise  # away for a moment (the next tick looks again), or `read` failed
            raise self._gone("no longer holds a board") from None
        if found[0] != self.board_id:
            raise self._gone(f"is now another board ({found[0]})")
        return result

    def _gone(self, what: str) -> errors.BoardGone:
        where = self.path or "the board's database"
        return errors.BoardGone(
            f"the board {where} (id {self.board_id}) {what} while this dispatcher ran; "
            "stopped. Running agents keep their supervisors; restore the board, or `kanban "
            "init` a new one and start the dispatcher again"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _Opening:
    """What a tick reads first, in one transaction (Dispatcher._opening)."""

    now: dt.datetime
    writes: int  # the board's write count when read: a later write makes these stale
    live: list[views.RunView]  # this host's live runs
    expired: list[views.RunView]  # every host's runs whose lease expired before `now`
    running: list[tuple[views.RunView, views.CardView]]
    unreleased: list[views.RunView]  # this host's ended runs whose processes are not confirmed gone


class Dispatcher:
    def __init__(
        self,
        board_: api.Board,
        *,
        max_workers: int | None = None,
        interval: float | None = None,
        spawner: processes.Spawner | None = None,
        name: str | None = None,
        at: cron.At | None = None,
        hooks: Mapping[str, TickHook] | None = None,
        now: Callable[[], dt.datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`at` evaluates schedules as of that time (`dispatch --once --at`); `hooks` are
        extra steps after the standard ones (schedules and goals are standard steps). `now`
        and `monotonic` are the clocks of the tick and the loop (tests inject them)."""
        self.board = board_
        self.now = now or clock.now
        self.monotonic = monotonic
        self.at = at
        self.settings = board_.settings
        self.max_workers = max_workers or self.settings.max_workers
        self.interval = interval or self.settings.tick_interval
        self.spawner = spawner or (
            forkserver.ForkSpawner() if self.settings.fork_server else processes.RealSpawner()
        )
        self.name = name or f"{self.settings.host_id}:{os.getpid()}"
        self.hooks: dict[str, TickHook] = dict(hooks or {})
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.tokens: dict[int, str] = {}  # run id -> token, for supervisors still starting
        # The process's own start time: with the pid, `kanban status` knows it again (why.py).
        me = processes.Identity.of(os.getpid())
        self.started_at = dt.datetime.fromtimestamp(me.started, dt.UTC)
        self.lock = TickLock(self.settings.state_dir)
        self.stopping = threading.Event()  # set: claim nothing more (SIGTERM, see kanban.pods)
        self._last_full_promote: float | None = None
        self.identity = BoardIdentity.of(board_)
        self.gone: errors.BoardGone | None = None  # set when the board vanished under us

    # ------------------------------------------------------------------ one tick

    def tick(self, now: dt.datetime | None = None) -> TickReport:
        with self.lock.hold():
            t0 = time.perf_counter()
            opening = self.identity.check(self.board, functools.partial(self._opening, now))
            assert opening is not None
            return self._tick(opening, t0)

    def _opening(self, now: dt.datetime | None, conn: Any) -> _Opening:
        """The tick's first reads, in the board identity check's transaction (on PostgreSQL
        every transaction is three round trips more than its statements)."""
        now = now or self.now()  # after the transaction read the board's clock, when due
        host = self.settings.host_id
        return _Opening(
            now=now,
            writes=self.board.tx.writes,
            live=board.live_runs(conn, host=host),
            expired=board.expired_runs(conn, now=now),
            running=board.running(conn),
            unreleased=board.releases.unreleased_runs(conn, host=host),
        )

    def _read(self, opening: _Opening, kept: T, fn: Callable[[Any], T]) -> T:
        """`kept` (read at the tick's opening) unless this process wrote since: then again."""
        return kept if self.board.tx.writes == opening.writes else self.board.tx.read(fn)

    def _tick(self, opening: _Opening, t0: float) -> TickReport:
        now = opening.now
        report = TickReport(started=now)
        self._check_processes(now, report, opening)  # reap
        self._reap()
        self._reclaim(now, report, opening)
        self._enforce_timeouts(now, report, opening)
        self._release(now, opening)
        self._promote(now, report)
        report.schedules = self._step("schedules", report, self._fire, now, schedules.Fires())
        report.goals = self._step("goals", report, self.board.goals.advance, now, goals.Advance())
        for name, hook in self.hooks.items():
            try:
                report.hooks[name] = hook(self.board, now)
            except errors.KanbanError as exc:
                logger.error("tick hook %s failed: %s", name, exc)
                report.hooks[name] = {"error": exc.message}
        claims = self._claim(now, report)
        self._start(claims, report)
        # The next moment something is due: a backoff ending, a lease expiring, or whatever a
        # hook says (`next_due` in its result: the next schedule fire).
        # The board's part is read in the dispatcher's heartbeat transaction (_beat).
        report.duration_ms = round((time.perf_counter() - t0) * 1000, 2)
        board_due = self._beat(now, report)
        due = [board_due, report.schedules.next_due]
        due += [r.get("next_due") for r in report.hooks.values()]
        report.next_due = min((d for d in due if isinstance(d, dt.datetime)), default=None)
        if report.busy:
            logger.debug("tick: %s", {k: v for k, v in report.to_json().items() if v})
        return report

    def _step(
        self,
        name: str,
        report: TickReport,
        fn: Callable[[dt.datetime], T],
        now: dt.datetime,
        empty: T,
    ) -> T:
        """One step that must not stop the tick: its error is logged and reported."""
        try:
            return fn(now)
        except errors.KanbanError as exc:
            logger.error("tick step %s failed: %s", name, exc)
            report.hooks[name] = {"error": exc.message}
            return empty

    def _fire(self, now: dt.datetime) -> schedules.Fires:
        return self.board.schedules.fire_due(now, at=self.at)

    def drained(self) -> bool:
        """Nothing running or ready, and no goal waiting for a tick (`dispatch --drain`)."""
        return drained(self.board) and not self.board.goals.due()

    def _reap(self) -> None:
        for run_id, child in list(self.children.items()):
            if child.poll() is not None:
                del self.children[run_id]
                self.tokens.pop(run_id, None)

    def _check_processes(self, now: dt.datetime, report: TickReport, opening: _Opening) -> None:
        """This host's live runs whose supervisor is gone, a zombie or replaced: `crashed`.

        A supervisor we started that has not checked in yet is still starting: its process is
        our child and alive, so we renew its lease for it (its start-up time never decides).
        """
        for run in opening.live:
            if run.supervisor_pid is None or run.supervisor_started is None:
                child = self.children.get(run.id)
                if child is None:
                    continue
                if child.poll() is None:
                    if run.id in self.tokens:
                        with contextlib.suppress(errors.LeaseLost):
                            self.board.heartbeat(run.card_id, token=self.tokens[run.id])
                    continue
                # It exited; it may have checked in (and gone on) after the read above.
                fresh = self.board.tx.read(functools.partial(board.get_run, run_id=run.id))
                if fresh is None or fresh.outcome is not None:
                    continue
                run = fresh
                if run.supervisor_pid is None or run.supervisor_started is None:
                    if self._settle(run).gone:
                        self._end(
                            run,
                            RunOutcome.SPAWN_FAILED,
                            report.spawn_failed,
                            now,
                            f"the supervisor exited "
                            f"({processes.exit_description(child.returncode)}) before "
                            f"starting; see {self.settings.log_dir / 'supervisors.log'}",
                        )
                    continue
            supervisor = processes.Identity(run.supervisor_pid, run.supervisor_started)
            state = processes.state(supervisor)
            if state == "alive":
                continue
            settled = self._settle(run)
            if not settled.gone:
                logger.warning("run %s: its agent would not stop; not requeued", run.id)
                continue
            self._end(run, RunOutcome.CRASHED, report.crashed, now, settled.describe(run))

    def _reclaim(self, now: dt.datetime, report: TickReport, opening: _Opening) -> None:
        expired = self._read(opening, opening.expired, lambda c: board.expired_runs(c, now=now))
        safe: list[int] = []
        for run in expired:
            if run.host == self.settings.host_id and not self._stop_run_processes(run):
                logger.warning(
                    "run %s: could not confirm its processes are gone; not requeued", run.id
                )
                continue
            safe.append(run.id)
        if safe:
            ended = self.board.tx.write(
                lambda c: board.reclaim_expired(
                    c,
                    now=now,
                    backoff=self.board.backoff,
                    run_ids=safe,
                    actor=f"dispatcher:{self.name}",
                ),
                wake_dispatcher=False,
            )
            report.reclaimed += [e.run.card_id for e in ended]

    def _stop_run_processes(self, run: views.RunView) -> bool:
        """Kill this host's supervisor and agent group of `run`; True once both are gone.

        The supervisor goes first, with SIGKILL: it is presumed broken (it stopped renewing
        the lease), and must not race us to record an outcome for the agent we stop next.
        """
        ok = True
        if run.supervisor_pid is not None and run.supervisor_started is not None:
            ok &= processes.kill_group(
                processes.Identity(run.supervisor_pid, run.supervisor_started), grace=0
            )
        ok &= self._settle(run).gone  # the recorded agent, and any found by its run mark
        child = self.children.pop(run.id, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)
        return ok

    def _settle(self, run: views.RunView) -> liveness.Settled:
        token = self.board.tx.read(lambda c: board.token_of(c, run.id))
        return liveness.settle(run, token=token, state_dir=self.settings.state_dir)

    def _release(self, now: dt.datetime, opening: _Opening) -> None:
        """Ended runs of this host whose supervisor is gone: stop what is left of them,
        confirm it gone by identity, and let their card run again (one live agent per card)."""
        host = self.settings.host_id
        unreleased = self._read(
            opening,
            opening.unreleased,
            lambda c: board.releases.unreleased_runs(c, host=host),
        )
        for run in unreleased:
            supervisor = processes.Identity(run.supervisor_pid or 0, run.supervisor_started or 0.0)
            if processes.state(supervisor) == "alive" or not self._settle(run).gone:
                continue  # its supervisor stops the agent and releases the run itself
            self.board.tx.write(functools.partial(self._released, run_id=run.id, now=now))

    def _released(self, conn: Any, *, run_id: int, now: dt.datetime) -> bool:
        return board.releases.release_run(
            conn, run_id=run_id, now=now, how=f"dispatcher:{self.name}"
        )

    def _enforce_timeouts(self, now: dt.datetime, report: TickReport, opening: _Opening) -> None:
        known, _ = profiles.load_all(repo=self.settings.repo)
        for run, card in self._read(opening, opening.running, board.running):
            if run.host != self.settings.host_id or run.started_at is None:
                continue
            profile = known.get(card.profile or "")
            limit = card.timeout or (profile.timeout if profile else None)
            if limit is None:
                continue
            deadline = run.started_at + dt.timedelta(seconds=limit + TIMEOUT_GRACE)
            if now > deadline and self._stop_run_processes(run):
                self._end(
                    run,
                    RunOutcome.TIMED_OUT,
                    report.timed_out,
                    now,
                    f"ran past its timeout of {clock.human(limit)}; stopped by the dispatcher",
                )

    def _promote(self, now: dt.datetime, report: TickReport) -> None:
        if (
            self._last_full_promote is not None
            and self.monotonic() - self._last_full_promote < FULL_PROMOTE_EVERY
        ):
            return
        report.promoted = self.board.tx.write(lambda c: board.promote(c, now=now))
        self._last_full_promote = self.monotonic()

    def snapshot(self, now: dt.datetime) -> planning.Snapshot:
        """What the planner sees: the same read `kanban why` makes (kanban.snapshots)."""
        return snapshots.read(self.board.tx, self.settings, max_workers=self.max_workers, now=now)

    def _claim(self, now: dt.datetime, report: TickReport) -> list[views.Claim]:
        if self.stopping.is_set():
            return []
        snap = self.snapshot(now)
        chosen = planning.plan(snap)
        report.waiting = len(chosen.waiting)
        if not chosen.claim:
            return []
        ttl = self.settings.lease_ttl

        def claim_all(conn: Any) -> list[views.Claim]:
            won = []
            for card_id in chosen.claim:
                card = next(c for c in snap.candidates if c.id == card_id)
                profile = snap.profiles[card.profile or ""]
                claim = board.claim(
                    conn,
                    now=now,
                    host=self.settings.host_id,
                    ttl=ttl,
                    card_id=card_id,
                    worker=f"dispatcher:{self.name}",
                    default_max_attempts=profile.max_attempts,
                )
                if claim is not None:
                    won.append(claim)
            return won

        claims = self.board.tx.write(claim_all)
        report.claimed = [c.card_id for c in claims]
        return claims

    def _start(self, claims: list[views.Claim], report: TickReport) -> None:
        """After the claims are committed: start one supervisor per claim, with a scrubbed
        environment (kanban.confine); its token and board go to it on standard input."""
        known, _ = profiles.load_all(repo=self.settings.repo)
        cwd = self.settings.repo or self.settings.state_dir
        log = self.settings.log_dir / "supervisors.log"
        for claim in claims:
            argv = [
                sys.executable,
                "-m",
                "kanban.supervisor",
                "--card",
                str(claim.card_id),
                "--run",
                str(claim.run_id),
            ]
            profile = known.get(claim.card.profile or "")
            env = confine.supervisor_env(
                os.environ,
                allow=profile.env_allow if profile is not None else (),
                settings=settings_env(self.board),
            )
            try:
                child = self.spawner.start(
                    argv, cwd=cwd, env={**env, "KANBAN_TOKEN": claim.token}, log=log
                )
            except (errors.SpawnError, OSError) as exc:
                self._spawn_failed(claim, f"could not start the supervisor: {exc}")
                report.spawn_failed.append(claim.card_id)
                continue
            self.children[claim.run_id] = child
            self.tokens[claim.run_id] = claim.token

    def _spawn_failed(self, claim: views.Claim, error: str) -> None:
        def end(conn: Any) -> None:
            board.end_run(
                conn,
                card_id=claim.card_id,
                token=claim.token,
                result=views.RunResult(RunOutcome.SPAWN_FAILED, error=error),
                now=self.now(),
                backoff=self.board.backoff,
                actor=f"dispatcher:{self.name}",
            )

        self.board.tx.write(end)

    def _end(
        self,
        run: views.RunView,
        outcome: RunOutcome,
        bucket: list[int],
        now: dt.datetime,
        error: str,
    ) -> None:
        def end(conn: Any) -> None:
            token = board.token_of(conn, run.id)
            board.end_run(
                conn,
                card_id=run.card_id,
                token=token,
                result=views.RunResult(outcome, error=error),
                now=now,
                backoff=self.board.backoff,
                actor=f"dispatcher:{self.name}",
            )

        try:
            self.board.tx.write(end)
        except errors.LeaseLost:
            return  # it ended by itself in the meantime
        bucket.append(run.card_id)
        logger.debug("card %s run %s: %s: %s", run.card_id, run.id, outcome, error)

    def _beat(self, now: dt.datetime, report: TickReport) -> dt.datetime | None:
        """Record the dispatcher's heartbeat; returns the board's next due moment (read in
        the same transaction: a backoff ending, a lease expiring)."""
        summary = {
            k: (len(v) if isinstance(v, list) else v)
            for k, v in report.to_json().items()
            if k
            in (
                "claimed",
                "crashed",
                "reclaimed",
                "timed_out",
                "spawn_failed",
                "waiting",
                "duration_ms",
            )
        }
        summary["max_workers"] = self.max_workers

        def beat(conn: Any) -> dt.datetime | None:
            due = board.next_due(conn, now=now)
            board.dispatchers.beat(
                conn,
                name=self.name,
                host=self.settings.host_id,
                pid=os.getpid(),
                started_at=self.started_at,
                now=now,
                interval=self.interval,
                version=__version__,
                last_tick=summary,
                clock_offset=clock.offset(),
            )
            return due

        return self.board.tx.write(beat)

    def stopped(self) -> None:
        if self.gone is not None:
            return  # whatever is at the board's path now is not our board: write nothing
        with contextlib.suppress(errors.KanbanError):
            self.board.tx.write(
                lambda c: board.dispatchers.stopped(c, name=self.name, now=self.now())
            )

    # ------------------------------------------------------------------ the loop

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        until: Callable[[TickReport], bool] | None = None,
        observe: Callable[[TickReport | None, Exception | None], None] | None = None,
    ) -> None:
        """Tick until `stop` is set (SIGTERM/SIGINT set it) or `until(report)` says so.
        `observe` hears of every tick: its report, or the error that failed it.

        Supervisors run in their own sessions: stopping the dispatcher leaves agents working.
        """
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        from kanban.notify import courier

        stop = self.stopping = stop or threading.Event()
        loop = _Loop(self, stop, until, observe)
        listener = wake.listen(self.board.engine)
        scheduler = BackgroundScheduler(timezone=dt.UTC)
        scheduler.add_job(
            loop.job,
            IntervalTrigger(seconds=self.interval, timezone=dt.UTC),
            id="tick",
            max_instances=1,
            coalesce=True,
            next_run_time=dt.datetime.now(dt.UTC),
        )
        loop.scheduler = scheduler
        # Notifications go out from their own thread, never under the tick's lock.
        courier_ = courier.Courier(self.board, name=self.name)
        loop.courier = courier_
        delivering = courier_.start(stop)
        if isinstance(self.spawner, forkserver.ForkSpawner):  # ready by the first claim
            self.spawner.warm(
                cwd=self.settings.repo or self.settings.state_dir,
                log=self.settings.log_dir / "supervisors.log",
            )
        scheduler.start()
        logger.info(
            "dispatching %s on %s: up to %d workers, tick every %s and on every change",
            self.settings.db_url,
            self.settings.host_id,
            self.max_workers,
            clock.human(self.interval),
        )
        try:
            while not stop.is_set():
                if listener.wait(timeout=0.5):
                    loop.request()
                loop.check_timer()
        finally:
            scheduler.shutdown(wait=True)
            courier_.wake.set()
            delivering.join(timeout=self.settings.notify_timeout + 5)
            if until is not None:  # --drain: the last ticks' messages go out before we exit
                courier_.last_pass()
            listener.close()
            if isinstance(self.spawner, forkserver.ForkSpawner):
                self.spawner.close()  # the fork server goes; the supervisors it forked stay
            self.stopped()
            logger.info(
                "dispatcher stopped; %d agent(s) keep running under their supervisors",
                len([c for c in self.children.values() if c.poll() is None]),
            )
        if self.gone is not None:
            raise self.gone


class _Loop:
    """Serialises tick requests: a wake during a tick runs one more tick right after it."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        stop: threading.Event,
        until: Callable[[TickReport], bool] | None,
        observe: Callable[[TickReport | None, Exception | None], None] | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.stop = stop
        self.until = until
        self.observe = observe
        self.scheduler: Any = None
        self.courier: Any = None  # kanban.notify.courier.Courier, while the loop runs
        self._lock = threading.Lock()
        self._running = False
        self._again = False
        self._due: dt.datetime | None = None

    def request(self) -> None:
        with self._lock:
            if self._running:
                self._again = True
                return
        if self.scheduler is not None and not self.stop.is_set():
            with contextlib.suppress(Exception):  # the scheduler may be shutting down
                self.scheduler.modify_job("tick", next_run_time=dt.datetime.now(dt.UTC))

    def check_timer(self) -> None:
        due = self._due
        if due is not None and self.dispatcher.now() >= due:
            self._due = None
            self.request()

    def job(self) -> None:
        while not self.stop.is_set():
            with self._lock:
                self._running, self._again = True, False
            try:
                report = self.dispatcher.tick()
                self._due = report.next_due
                if self.courier is not None:
                    self.courier.wake.set()  # the tick may have made deliveries due
                if self.observe is not None:
                    self.observe(report, None)
                if self.until is not None and self.until(report):
                    self.stop.set()
            except errors.BoardGone as exc:  # nothing to dispatch any more: stop, loudly
                logger.error("%s", exc.message)
                self.dispatcher.gone = exc
                self.stop.set()
            except Exception as exc:  # a tick must never kill the loop
                logger.exception("tick failed; the next one will try again")
                if self.observe is not None:
                    with contextlib.suppress(Exception):
                        self.observe(None, exc)
            with self._lock:
                if not self._again:
                    self._running = False
                    return


def install_signal_handlers(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        logger.info("%s: stopping after the current tick", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def drained(board_: api.Board) -> bool:
    """Nothing is running or ready (backing-off cards count as ready). Then no waiting card can
    become ready either: the root of every waiting chain needs a person (blocked, review...)."""
    counts = board_.status().counts
    return not (counts["running"] or counts["ready"])
