"""The board's tables. Schema changes go through a migration in `migrations/versions`.

Times are stored as naive UTC and come back as aware UTC datetimes (`UTCDateTime`), so
comparisons in SQL are plain string/timestamp comparisons on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kanban.states import (
    CardRole,
    CardStatus,
    CatchUp,
    GoalStatus,
    Overlap,
    RunOutcome,
    ScheduleKind,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; naive UTC in the database."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the board; use datetime.now(UTC)")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC)


def _in(column: str, values: type[enum.StrEnum]) -> str:
    listed = ", ".join(f"'{v.value}'" for v in values)
    return f"{column} IN ({listed})"


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads it as a class attribute
        dt.datetime: UTCDateTime(),
        dict[str, Any]: sa.JSON(),
        list[str]: sa.JSON(),
    }


class Card(Base):
    __tablename__ = "cards"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.Text)
    body: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[str] = mapped_column(sa.String(16))
    profile: Mapped[str | None] = mapped_column(sa.String(128))
    priority: Mapped[int] = mapped_column(default=0)
    paths: Mapped[list[str] | None]
    max_attempts: Mapped[int | None]
    timeout_s: Mapped[float | None]
    idem_key: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    review: Mapped[bool] = mapped_column(default=False)
    attempts: Mapped[int] = mapped_column(default=0)  # attempts spent (failures, crashes...)
    not_before: Mapped[dt.datetime | None]  # retry backoff: not claimable before this
    reason: Mapped[str | None] = mapped_column(sa.Text)  # why blocked / failed / cancelled
    summary: Mapped[str | None] = mapped_column(sa.Text)  # the result, from the agent
    branch: Mapped[str | None] = mapped_column(sa.String(255))  # where the card's work lives
    created_by: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    ready_at: Mapped[dt.datetime | None]  # when it last became ready (queue age)
    goal_id: Mapped[int | None] = mapped_column(sa.ForeignKey("goals.id", ondelete="SET NULL"))
    role: Mapped[str | None] = mapped_column(sa.String(16))  # a goal's planner or judge card
    max_cost_usd: Mapped[float | None]  # cost cap over all of the card's runs

    __table_args__ = (
        sa.CheckConstraint(_in("status", CardStatus), name="status"),
        sa.CheckConstraint(f"role IS NULL OR {_in('role', CardRole)}", name="role"),
        sa.Index("ix_cards_goal", "goal_id"),
        sa.CheckConstraint("length(title) > 0", name="title_not_empty"),
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # The claim query: ready cards by priority, then age.
        sa.Index("ix_cards_queue", "status", sa.text("priority DESC"), "ready_at"),
        # The dispatcher asks per profile with free capacity.
        sa.Index(
            "ix_cards_profile_queue", "status", "profile", sa.text("priority DESC"), "ready_at"
        ),
        # The next retry due (few cards back off at a time).
        sa.Index(
            "ix_cards_backoff",
            "not_before",
            sqlite_where=sa.text("not_before IS NOT NULL"),
            postgresql_where=sa.text("not_before IS NOT NULL"),
        ),
    )


class Dependency(Base):
    """parent -> child: the child may start only when the parent is done."""

    __tablename__ = "dependencies"

    parent_id: Mapped[int] = mapped_column(
        sa.ForeignKey("cards.id", ondelete="CASCADE"), primary_key=True
    )
    child_id: Mapped[int] = mapped_column(
        sa.ForeignKey("cards.id", ondelete="CASCADE"), primary_key=True
    )

    __table_args__ = (
        sa.CheckConstraint("parent_id <> child_id", name="not_self"),
        sa.Index("ix_dependencies_child", "child_id"),
    )


class Run(Base):
    """One attempt at a card. A run is live while `outcome` is NULL."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int] = mapped_column(sa.ForeignKey("cards.id", ondelete="CASCADE"))
    attempt: Mapped[int]
    max_attempts: Mapped[int]  # the budget in force when this run was claimed
    profile: Mapped[str | None] = mapped_column(sa.String(128))
    worker: Mapped[str | None] = mapped_column(sa.String(255))  # who claimed it
    host: Mapped[str] = mapped_column(sa.String(255))
    token: Mapped[str] = mapped_column(sa.String(64), unique=True)
    claimed_at: Mapped[dt.datetime]
    started_at: Mapped[dt.datetime | None]  # the agent process started
    heartbeat_at: Mapped[dt.datetime | None]
    lease_expires_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime | None]
    # Process identity (design invariant 6): pid plus the process's start time on `host`.
    pid: Mapped[int | None]
    pid_started: Mapped[float | None]
    supervisor_pid: Mapped[int | None]
    supervisor_started: Mapped[float | None]
    worktree: Mapped[str | None] = mapped_column(sa.Text)
    branch: Mapped[str | None] = mapped_column(sa.String(255))
    log_path: Mapped[str | None] = mapped_column(sa.Text)
    exit_code: Mapped[int | None]
    outcome: Mapped[str | None] = mapped_column(sa.String(16))
    summary: Mapped[str | None] = mapped_column(sa.Text)
    error: Mapped[str | None] = mapped_column(sa.Text)
    # What the run used, as the agent reported it (NULL: the agent does not say).
    tokens_in: Mapped[int | None]
    tokens_out: Mapped[int | None]
    cost_usd: Mapped[float | None]

    __table_args__ = (
        sa.CheckConstraint(f"outcome IS NULL OR {_in('outcome', RunOutcome)}", name="outcome"),
        # At most one live run per card, enforced by the database itself.
        sa.Index(
            "uq_runs_live_card",
            "card_id",
            unique=True,
            sqlite_where=sa.text("outcome IS NULL"),
            postgresql_where=sa.text("outcome IS NULL"),
        ),
        sa.Index("ix_runs_card", "card_id", "attempt"),
        sa.Index(
            "ix_runs_live_lease",
            "lease_expires_at",
            sqlite_where=sa.text("outcome IS NULL"),
            postgresql_where=sa.text("outcome IS NULL"),
        ),
    )


class Event(Base):
    """Append-only history: who did what to which card, and when."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int | None] = mapped_column(sa.ForeignKey("cards.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id", ondelete="SET NULL"))
    at: Mapped[dt.datetime]
    actor: Mapped[str | None] = mapped_column(sa.String(255))
    kind: Mapped[str] = mapped_column(sa.String(32))
    data: Mapped[dict[str, Any] | None]

    __table_args__ = (sa.Index("ix_events_card", "card_id", "id"),)


class Comment(Base):
    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    card_id: Mapped[int] = mapped_column(sa.ForeignKey("cards.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime]
    author: Mapped[str | None] = mapped_column(sa.String(255))
    body: Mapped[str] = mapped_column(sa.Text)

    __table_args__ = (sa.Index("ix_comments_card", "card_id", "id"),)


class Dispatcher(Base):
    """One dispatcher process (or `--once` caller) and when it last ticked."""

    __tablename__ = "dispatchers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255), unique=True)  # host:pid, or host:once
    host: Mapped[str] = mapped_column(sa.String(255))
    pid: Mapped[int]
    started_at: Mapped[dt.datetime]
    heartbeat_at: Mapped[dt.datetime]
    stopped_at: Mapped[dt.datetime | None]
    interval_s: Mapped[float]
    version: Mapped[str] = mapped_column(sa.String(32))
    last_tick: Mapped[dict[str, Any] | None]  # what the last tick did (counts, duration)


class Goal(Base):
    """An objective that a planner breaks into cards and a judge checks, turn after turn."""

    __tablename__ = "goals"

    id: Mapped[int] = mapped_column(primary_key=True)
    objective: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16))
    planner: Mapped[str | None] = mapped_column(sa.String(128))  # profile of its planner cards
    judge: Mapped[str | None] = mapped_column(sa.String(128))  # profile of its judge cards
    max_turns: Mapped[int]
    auto: Mapped[bool] = mapped_column(default=False)  # plans run without `goal approve`
    turn: Mapped[int] = mapped_column(default=0)  # the current turn (1 is the first)
    max_cost_usd: Mapped[float | None]  # budget over all of its cards' runs
    reason: Mapped[str | None] = mapped_column(sa.Text)  # why blocked / cancelled, last verdict
    created_by: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime | None]

    __table_args__ = (
        sa.CheckConstraint(_in("status", GoalStatus), name="status"),
        sa.CheckConstraint("length(objective) > 0", name="objective_not_empty"),
        sa.CheckConstraint("max_turns >= 1", name="max_turns_positive"),
        sa.CheckConstraint("turn >= 0", name="turn_not_negative"),
        sa.Index("ix_goals_status", "status"),
    )


class GoalTurn(Base):
    """One planning turn of a goal: its plan, its approval, and the judge's verdict."""

    __tablename__ = "goal_turns"

    id: Mapped[int] = mapped_column(primary_key=True)
    goal_id: Mapped[int] = mapped_column(sa.ForeignKey("goals.id", ondelete="CASCADE"))
    number: Mapped[int]
    feedback: Mapped[str | None] = mapped_column(sa.Text)  # the last verdict's reason
    planner_card_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("cards.id", ondelete="SET NULL")
    )
    plan: Mapped[dict[str, Any] | None]  # the accepted plan, with the card made for each key
    proposed_at: Mapped[dt.datetime | None]
    approved_at: Mapped[dt.datetime | None]
    judge_card_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("cards.id", ondelete="SET NULL")
    )
    verdict_done: Mapped[bool | None]
    verdict_reason: Mapped[str | None] = mapped_column(sa.Text)
    judged_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime]

    __table_args__ = (sa.UniqueConstraint("goal_id", "number"),)


class Schedule(Base):
    """A cron expression that puts a card (from a template) or a goal on the board."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    spec: Mapped[str] = mapped_column(sa.String(255))  # five crontab fields, or @daily ...
    tz: Mapped[str] = mapped_column(sa.String(64))  # IANA zone the spec is read in
    kind: Mapped[str] = mapped_column(sa.String(8))
    template: Mapped[dict[str, Any]]  # what each fire creates
    overlap: Mapped[str] = mapped_column(sa.String(8))
    catch_up: Mapped[str] = mapped_column(sa.String(8))
    paused: Mapped[bool] = mapped_column(default=False)
    # Every fire time up to here has been dealt with (fired, skipped or missed on purpose).
    last_fire_at: Mapped[dt.datetime | None]
    created_by: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]

    __table_args__ = (
        sa.CheckConstraint(_in("kind", ScheduleKind), name="kind"),
        sa.CheckConstraint(_in("overlap", Overlap), name="overlap"),
        sa.CheckConstraint(_in("catch_up", CatchUp), name="catch_up"),
    )


class ScheduleFire(Base):
    """One fire of a schedule. UNIQUE(schedule, fire time) is what stops a double fire: the
    row is inserted in the same transaction as the card or goal it creates."""

    __tablename__ = "schedule_fires"

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(sa.ForeignKey("schedules.id", ondelete="CASCADE"))
    fire_at: Mapped[dt.datetime]  # the scheduled moment (or the moment of a manual fire)
    at: Mapped[dt.datetime]  # when it was recorded
    manual: Mapped[bool] = mapped_column(default=False)  # `kanban cron run`
    card_id: Mapped[int | None] = mapped_column(sa.ForeignKey("cards.id", ondelete="SET NULL"))
    goal_id: Mapped[int | None] = mapped_column(sa.ForeignKey("goals.id", ondelete="SET NULL"))
    skipped: Mapped[str | None] = mapped_column(sa.Text)  # why nothing was created

    __table_args__ = (sa.UniqueConstraint("schedule_id", "fire_at"),)


# Core tables for the board's set-based statements (the ORM classes above define them).
cards = cast(sa.Table, Card.__table__)
dependencies = cast(sa.Table, Dependency.__table__)
runs = cast(sa.Table, Run.__table__)
events = cast(sa.Table, Event.__table__)
comments = cast(sa.Table, Comment.__table__)
dispatchers = cast(sa.Table, Dispatcher.__table__)
goals = cast(sa.Table, Goal.__table__)
goal_turns = cast(sa.Table, GoalTurn.__table__)
schedules = cast(sa.Table, Schedule.__table__)
schedule_fires = cast(sa.Table, ScheduleFire.__table__)
