"""Frozen values handed out by `board`. Nothing outside `board` sees a database row.

`to_json()` gives the shape every `--json` output uses (ISO-8601 UTC times).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from kanban.clock import iso


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class _View:
    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = _jsonable(self)
        return result


@dataclasses.dataclass(frozen=True, slots=True)
class CardView(_View):
    id: int
    title: str
    status: str
    profile: str | None
    priority: int
    parents: tuple[int, ...]
    body: str = ""
    paths: tuple[str, ...] = ()
    max_attempts: int | None = None
    timeout: float | None = None
    key: str | None = None
    review: bool = False
    attempts: int = 0
    not_before: dt.datetime | None = None
    reason: str | None = None
    summary: str | None = None
    branch: str | None = None
    created_by: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    ready_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RunView(_View):
    id: int
    card_id: int
    attempt: int
    max_attempts: int
    profile: str | None
    worker: str | None
    host: str
    claimed_at: dt.datetime
    lease_expires_at: dt.datetime
    started_at: dt.datetime | None = None
    heartbeat_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    pid: int | None = None
    pid_started: float | None = None
    supervisor_pid: int | None = None
    supervisor_started: float | None = None
    worktree: str | None = None
    branch: str | None = None
    log_path: str | None = None
    exit_code: int | None = None
    outcome: str | None = None
    summary: str | None = None
    error: str | None = None

    @property
    def live(self) -> bool:
        return self.outcome is None


@dataclasses.dataclass(frozen=True, slots=True)
class Claim(_View):
    """A won claim: the run's token fences every later write for it."""

    card_id: int
    run_id: int
    token: str
    attempt: int
    lease_expires_at: dt.datetime
    card: CardView


@dataclasses.dataclass(frozen=True, slots=True)
class EventView(_View):
    id: int
    card_id: int | None
    run_id: int | None
    at: dt.datetime
    actor: str | None
    kind: str
    data: Mapping[str, Any] | None


@dataclasses.dataclass(frozen=True, slots=True)
class CommentView(_View):
    id: int
    card_id: int
    at: dt.datetime
    author: str | None
    body: str


@dataclasses.dataclass(frozen=True, slots=True)
class CardDetail(_View):
    """Everything `kanban show` prints."""

    card: CardView
    parents: tuple[CardView, ...]
    children: tuple[CardView, ...]
    runs: tuple[RunView, ...]
    events: tuple[EventView, ...]
    comments: tuple[CommentView, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class RunEnd(_View):
    """What ending a run did to its card (returned by the verbs that close runs)."""

    run: RunView
    card_status: str
    retry_at: dt.datetime | None = None
    promoted: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class BoardStatus(_View):
    counts: Mapping[str, int]
    running: tuple[RunView, ...]
    oldest_ready_at: dt.datetime | None
    ready_waiting: int
    dispatchers: tuple[Mapping[str, Any], ...] = ()
    now: dt.datetime | None = None
