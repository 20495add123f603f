"""What a tick is made of, apart from the tick itself (kanban.dispatcher): its steps and
their typed report, the lock that keeps ticks from overlapping, the board identity the
dispatcher checks every tick, and the settings it hands its supervisors."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kanban import api, board, clock, errors, fsutil, goals, retrying, schedules, views

T = TypeVar("T")

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
