"""Frozen values handed out by `board`. Nothing outside `board` sees a database row.

`to_json()` gives the shape every `--json` output uses (ISO-8601 UTC times).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from kanban.clock import iso
from kanban.plans import Plan, Verdict
from kanban.states import RunOutcome

_PLAIN = (str, int, float, bool, type(None))
_FIELDS: dict[type, tuple[str, ...]] = {}  # field names per view class, looked up once


def jsonable(value: Any) -> Any:
    """Views, datetimes, sequences and mappings as JSON-ready values (ISO-8601 UTC times)."""
    if type(value) in _PLAIN:  # most values: answered first (10,000 cards in `ls --json`)
        return value
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    names = _FIELDS.get(type(value))
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS[type(value)] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        out = {}
        for name in names:
            item = getattr(value, name)
            out[name] = item if type(item) in _PLAIN else jsonable(item)
        return out
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    return value


class _View:
    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = jsonable(self)
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
    goal_id: int | None = None
    role: str | None = None  # "planner" or "judge" for a goal's own cards
    max_cost_usd: float | None = None  # cost cap over all of its runs
    model: str | None = None  # the model its profile runs it with (`model_args`)
    agent_args: tuple[str, ...] = ()  # extra arguments its profile allows (`card_args`)
    agent_env: Mapping[str, str] = dataclasses.field(default_factory=dict)  # (`card_env`)


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
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    released_at: dt.datetime | None = None  # no process of the ended run can still be alive
    model: str | None = None
    session_id: str | None = None  # the agent's own session id, read from its output

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
class Delivery:
    """What a goal's planner or judge delivered, read and checked before the transaction
    that ends its run (`kanban.goals.read_delivery`): a plan, a verdict, or why the file
    was refused. `profile_lines` are what a next planner card would list (a verdict that
    is not done starts the next turn)."""

    plan: Plan | None = None
    verdict: Verdict | None = None
    refused: str | None = None
    profile_lines: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended: the one value `board.end_run` applies under the run's token.

    Supervisors, the dispatcher, the CLI and the API all build one of these; what the
    agent delivered (a plan or verdict, any metadata) is read before the write transaction.
    `spends_attempt` overrides whether the outcome spends an attempt (None: the outcome's
    default). `metadata` is recorded with the run's `run_ended` event.
    """

    outcome: RunOutcome
    error: str | None = None
    summary: str | None = None
    exit_code: int | None = None
    retry_after: float | None = None
    spends_attempt: bool | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    log_path: str | None = None
    delivery: Delivery | None = None
    metadata: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Spend(_View):
    """What a set of runs used. Tokens and cost count only runs whose agent reported them."""

    runs: int = 0  # runs in the set
    reported: int = 0  # of which reported a cost
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class BoardStatus(_View):
    counts: Mapping[str, int]
    running: tuple[RunView, ...]
    oldest_ready_at: dt.datetime | None
    ready_waiting: int
    dispatchers: tuple[Mapping[str, Any], ...] = ()
    now: dt.datetime | None = None
    spend: Spend = dataclasses.field(default_factory=Spend)  # every run on the board
    spend_24h: Spend = dataclasses.field(default_factory=Spend)  # runs ended in the last 24 h


@dataclasses.dataclass(frozen=True, slots=True)
class GoalView(_View):
    id: int
    objective: str
    status: str
    planner: str | None
    judge: str | None
    max_turns: int
    auto: bool
    turn: int
    reason: str | None = None
    created_by: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    max_cost_usd: float | None = None  # budget over all of its cards' runs


@dataclasses.dataclass(frozen=True, slots=True)
class GoalTurnView(_View):
    number: int
    feedback: str | None  # what the judge said at the end of the turn before
    planner_card: int | None
    cards: tuple[int, ...]  # the cards its plan made
    plan: Mapping[str, Any] | None
    proposed_at: dt.datetime | None
    approved_at: dt.datetime | None
    judge_card: int | None
    verdict: Mapping[str, Any] | None  # {"done": bool, "reason": str} once judged
    judged_at: dt.datetime | None
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class GoalDetail(_View):
    """Everything `kanban goal show` prints: the goal, its turns and verdicts, its cards."""

    goal: GoalView
    turns: tuple[GoalTurnView, ...]
    cards: tuple[CardView, ...]  # every card of the goal: planners, work, judges
    progress: Mapping[str, int]  # work cards per status, plus "total"
    spend: Spend = dataclasses.field(default_factory=Spend)  # what all its cards' runs used


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleView(_View):
    id: int
    name: str
    spec: str
    tz: str
    kind: str
    template: Mapping[str, Any]
    overlap: str
    catch_up: str
    paused: bool
    last_fire_at: dt.datetime | None = None
    created_by: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class FireView(_View):
    id: int
    schedule_id: int
    fire_at: dt.datetime
    at: dt.datetime
    manual: bool
    card_id: int | None = None
    goal_id: int | None = None
    skipped: str | None = None


def usd(amount: float | None) -> str:
    """A cost as people read it: $1.25, $0.0042 below ten cents, - when unknown."""
    if amount is None:
        return "-"
    whole_cents = abs(amount - round(amount, 2)) < 1e-9
    return f"${amount:.2f}" if amount >= 0.1 or whole_cents else f"${amount:.4f}"
