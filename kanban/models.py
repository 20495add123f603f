"""The board's tables. Schema changes go through a migration in `migrations/versions`.

Plain SQLAlchemy Core tables: the board writes with set-based Core statements and never
uses the ORM, so we do not import it (that alone is about a sixth of a command's start-up).
Times are stored as naive UTC and come back as aware UTC datetimes (`UTCDateTime`), so
comparisons in SQL are plain comparisons on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa

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

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


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

    def result_processor(self, dialect: sa.Dialect, coltype: Any) -> Any:
        """On SQLite, parse the stored text with `datetime.fromisoformat` (C) instead of
        SQLAlchemy's regular expression, then mark it UTC: over 10,000 cards that regex was a
        quarter of `GET /api/cards` (docs/performance.md). Same values either way
        (tests/test_board.py::test_times_read_back_as_written_on_sqlite)."""
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        parse, utc = dt.datetime.fromisoformat, dt.UTC

        def process(value: Any) -> dt.datetime | None:
            if value is None:
                return None
            if isinstance(value, str):
                with contextlib.suppress(ValueError):
                    return parse(value + "+00:00")  # stored naive UTC: the usual case
                value = parse(value)
            when: dt.datetime = value
            return when.replace(tzinfo=utc) if when.tzinfo is None else when.astimezone(utc)

        return process


def _in(column: str, values: type[enum.StrEnum]) -> str:
    listed = ", ".join(f"'{v.value}'" for v in values)
    return f"{column} IN ({listed})"


_PARTIAL: list[tuple[sa.Index, str]] = []


def _partial(name: str, *columns: str, where: str, unique: bool = False) -> sa.Index:
    """An index over the rows matching `where`. Its PostgreSQL form is attached only when a
    PostgreSQL engine is made (`use_postgresql`): declaring `postgresql_where` here would
    import the whole PostgreSQL dialect into every SQLite command."""
    index = sa.Index(name, *columns, unique=unique, sqlite_where=sa.text(where))
    _PARTIAL.append((index, where))
    return index


def use_postgresql() -> None:
    for index, where in _PARTIAL:
        index.dialect_kwargs["postgresql_where"] = sa.text(where)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), primary_key=True)


def _fk(name: str, target: str, *, ondelete: str, nullable: bool = True) -> sa.Column[int]:
    return sa.Column(
        name, sa.Integer(), sa.ForeignKey(target, ondelete=ondelete), nullable=nullable
    )


def _when(name: str, *, nullable: bool = False) -> sa.Column[dt.datetime]:
    return sa.Column(name, UTCDateTime(), nullable=nullable)


goals = sa.Table(
    "goals",
    metadata,
    # An objective that a planner breaks into cards and a judge checks, turn after turn.
    _id(),
    sa.Column("objective", sa.Text(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("planner", sa.String(128)),  # profile of its planner cards
    sa.Column("judge", sa.String(128)),  # profile of its judge cards
    sa.Column("max_turns", sa.Integer(), nullable=False),
    sa.Column("auto", sa.Boolean(), nullable=False, default=False),  # no `goal approve` needed
    sa.Column("turn", sa.Integer(), nullable=False, default=0),  # the current turn (1 first)
    sa.Column("max_cost_usd", sa.Double()),  # budget over all of its cards' runs
    sa.Column("reason", sa.Text()),  # why blocked / cancelled, the last verdict
    sa.Column("created_by", sa.String(255)),
    _when("created_at"),
    _when("updated_at"),
    _when("ended_at", nullable=True),
    sa.CheckConstraint(_in("status", GoalStatus), name="status"),
    sa.CheckConstraint("length(objective) > 0", name="objective_not_empty"),
    sa.CheckConstraint("max_turns >= 1", name="max_turns_positive"),
    sa.CheckConstraint("turn >= 0", name="turn_not_negative"),
    sa.Index("ix_goals_status", "status"),
)

cards = sa.Table(
    "cards",
    metadata,
    _id(),
    sa.Column("title", sa.Text(), nullable=False),
    sa.Column("body", sa.Text(), nullable=False, default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("profile", sa.String(128)),
    sa.Column("priority", sa.Integer(), nullable=False, default=0),
    sa.Column("paths", sa.JSON()),
    sa.Column("max_attempts", sa.Integer()),
    sa.Column("timeout_s", sa.Double()),
    sa.Column("idem_key", sa.String(255), unique=True),
    sa.Column("review", sa.Boolean(), nullable=False, default=False),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),  # spent (failures...)
    _when("not_before", nullable=True),  # retry backoff: not claimable before this
    sa.Column("reason", sa.Text()),  # why blocked / failed / cancelled
    sa.Column("summary", sa.Text()),  # the result, from the agent
    sa.Column("branch", sa.String(255)),  # where the card's work lives
    sa.Column("created_by", sa.String(255)),
    _when("created_at"),
    _when("updated_at"),
    _when("ready_at", nullable=True),  # when it last became ready (queue age)
    _fk("goal_id", "goals.id", ondelete="SET NULL"),
    sa.Column("role", sa.String(16)),  # a goal's planner or judge card
    sa.Column("max_cost_usd", sa.Double()),  # cost cap over all of the card's runs
    # Per-card choices its profile allows: the model, extra arguments, extra variables.
    sa.Column("model", sa.String(200)),
    sa.Column("agent_args", sa.JSON()),
    sa.Column("agent_env", sa.JSON()),
    sa.CheckConstraint(_in("status", CardStatus), name="status"),
    sa.CheckConstraint(f"role IS NULL OR {_in('role', CardRole)}", name="role"),
    sa.Index("ix_cards_goal", "goal_id"),
    sa.CheckConstraint("length(title) > 0", name="title_not_empty"),
    sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    # The claim query: ready cards by priority, then age.
    # `id` last: the queries sort on it too (SQLite's rowid is implicit, PostgreSQL needs it).
    sa.Index("ix_cards_queue", "status", sa.text("priority DESC"), "ready_at", "id"),
    # The dispatcher asks per profile with free capacity.
    sa.Index(
        "ix_cards_profile_queue", "status", "profile", sa.text("priority DESC"), "ready_at", "id"
    ),
    # The next retry due (few cards back off at a time).
    _partial("ix_cards_backoff", "not_before", where="not_before IS NOT NULL"),
)

dependencies = sa.Table(
    "dependencies",
    metadata,
    # parent -> child: the child may start only when the parent is done.
    sa.Column(
        "parent_id", sa.Integer(), sa.ForeignKey("cards.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "child_id", sa.Integer(), sa.ForeignKey("cards.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.CheckConstraint("parent_id <> child_id", name="not_self"),
    sa.Index("ix_dependencies_child", "child_id"),
)

runs = sa.Table(
    "runs",
    metadata,
    # One attempt at a card. A run is live while `outcome` is NULL.
    _id(),
    _fk("card_id", "cards.id", ondelete="CASCADE", nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("max_attempts", sa.Integer(), nullable=False),  # the budget when claimed
    sa.Column("profile", sa.String(128)),
    sa.Column("worker", sa.String(255)),  # who claimed it
    sa.Column("host", sa.String(255), nullable=False),
    # SHA-256 of the lease token (kanban.board.runs.digest): the board file holds no token.
    sa.Column("token", sa.String(64), nullable=False, unique=True),
    _when("claimed_at"),
    _when("started_at", nullable=True),  # the agent process started
    _when("heartbeat_at", nullable=True),
    _when("lease_expires_at"),
    _when("ended_at", nullable=True),
    # Process identity (design invariant 6): pid plus the process's start time on `host`.
    sa.Column("pid", sa.Integer()),
    sa.Column("pid_started", sa.Double()),
    sa.Column("supervisor_pid", sa.Integer()),
    sa.Column("supervisor_started", sa.Double()),
    sa.Column("worktree", sa.Text()),
    sa.Column("branch", sa.String(255)),
    sa.Column("log_path", sa.Text()),
    sa.Column("exit_code", sa.Integer()),
    sa.Column("outcome", sa.String(16)),
    sa.Column("summary", sa.Text()),
    sa.Column("error", sa.Text()),
    # What the run used, as the agent reported it (NULL: the agent does not say).
    sa.Column("tokens_in", sa.Integer()),
    sa.Column("tokens_out", sa.Integer()),
    sa.Column("cost_usd", sa.Double()),
    # When no process of the run can still be alive (its supervisor said so, or this host's
    # dispatcher confirmed supervisor and agent gone by identity). A card's next run waits
    # for it (one live agent per card, kanban.liveness).
    _when("released_at", nullable=True),
    sa.Column("model", sa.String(200)),  # the model the card chose, if any
    sa.Column("session_id", sa.String(255)),  # the agent's own session, for a resume
    sa.CheckConstraint(f"outcome IS NULL OR {_in('outcome', RunOutcome)}", name="outcome"),
    # At most one live run per card, enforced by the database itself.
    _partial("uq_runs_live_card", "card_id", unique=True, where="outcome IS NULL"),
    sa.Index("ix_runs_card", "card_id", "attempt"),
    _partial("ix_runs_live_lease", "lease_expires_at", where="outcome IS NULL"),
    # Ended runs whose processes are not yet confirmed gone: few, read every tick.
    _partial(
        "ix_runs_unreleased",
        "host",
        where="outcome IS NOT NULL AND released_at IS NULL",
    ),
)

events = sa.Table(
    "events",
    metadata,
    # Append-only history: who did what to which card, and when.
    _id(),
    _fk("card_id", "cards.id", ondelete="CASCADE"),
    _fk("run_id", "runs.id", ondelete="SET NULL"),
    _when("at"),
    sa.Column("actor", sa.String(255)),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("data", sa.JSON()),
    sa.Index("ix_events_card", "card_id", "id"),
)

comments = sa.Table(
    "comments",
    metadata,
    _id(),
    _fk("card_id", "cards.id", ondelete="CASCADE", nullable=False),
    _when("at"),
    sa.Column("author", sa.String(255)),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Index("ix_comments_card", "card_id", "id"),
)

board_identity = sa.Table(
    "board_identity",
    metadata,
    # One row: the board's own id, carried by its card branches and worktrees, so that a
    # re-created board or a second board on one repository never builds on another's branch.
    sa.Column("board_id", sa.String(16), primary_key=True),
    _when("created_at"),
)

dispatchers = sa.Table(
    "dispatchers",
    metadata,
    # One dispatcher process (or `--once` caller) and when it last ticked.
    _id(),
    sa.Column("name", sa.String(255), nullable=False, unique=True),  # host:pid, host:once
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    _when("started_at"),
    _when("heartbeat_at"),
    _when("stopped_at", nullable=True),
    sa.Column("interval_s", sa.Double(), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("last_tick", sa.JSON()),  # what the last tick did (counts, duration)
    sa.Column("clock_offset_s", sa.Double()),  # its clock minus the database's (PostgreSQL)
)

goal_turns = sa.Table(
    "goal_turns",
    metadata,
    # One planning turn of a goal: its plan, its approval, and the judge's verdict.
    _id(),
    _fk("goal_id", "goals.id", ondelete="CASCADE", nullable=False),
    sa.Column("number", sa.Integer(), nullable=False),
    sa.Column("feedback", sa.Text()),  # the last verdict's reason
    _fk("planner_card_id", "cards.id", ondelete="SET NULL"),
    sa.Column("plan", sa.JSON()),  # the accepted plan, with the card made for each key
    _when("proposed_at", nullable=True),
    _when("approved_at", nullable=True),
    _fk("judge_card_id", "cards.id", ondelete="SET NULL"),
    sa.Column("verdict_done", sa.Boolean()),
    sa.Column("verdict_reason", sa.Text()),
    _when("judged_at", nullable=True),
    _when("created_at"),
    sa.UniqueConstraint("goal_id", "number"),
)

schedules = sa.Table(
    "schedules",
    metadata,
    # A cron expression that puts a card (from a template) or a goal on the board.
    _id(),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("spec", sa.String(255), nullable=False),  # five crontab fields, or @daily ...
    sa.Column("tz", sa.String(64), nullable=False),  # the IANA zone the spec is read in
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("template", sa.JSON(), nullable=False),  # what each fire creates
    sa.Column("overlap", sa.String(8), nullable=False),
    sa.Column("catch_up", sa.String(8), nullable=False),
    sa.Column("paused", sa.Boolean(), nullable=False, default=False),
    # Every fire time up to here has been dealt with (fired, skipped or missed on purpose).
    _when("last_fire_at", nullable=True),
    sa.Column("created_by", sa.String(255)),
    _when("created_at"),
    _when("updated_at"),
    sa.CheckConstraint(_in("kind", ScheduleKind), name="kind"),
    sa.CheckConstraint(_in("overlap", Overlap), name="overlap"),
    sa.CheckConstraint(_in("catch_up", CatchUp), name="catch_up"),
)

schedule_fires = sa.Table(
    "schedule_fires",
    metadata,
    # One fire of a schedule. UNIQUE(schedule, fire time) is what stops a double fire: the
    # row is inserted in the same transaction as the card or goal it creates.
    _id(),
    _fk("schedule_id", "schedules.id", ondelete="CASCADE", nullable=False),
    _when("fire_at"),  # the scheduled moment (or the moment of a manual fire)
    _when("at"),  # when it was recorded
    sa.Column("manual", sa.Boolean(), nullable=False, default=False),  # `kanban cron run`
    _fk("card_id", "cards.id", ondelete="SET NULL"),
    _fk("goal_id", "goals.id", ondelete="SET NULL"),
    sa.Column("skipped", sa.Text()),  # why nothing was created
    sa.UniqueConstraint("schedule_id", "fire_at"),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    # Who is told what: a webhook URL or a command, the event kinds, and an optional scope.
    _id(),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("url", sa.Text()),  # a webhook (http or https), or NULL for a command
    sa.Column("command", sa.JSON()),  # argv of a command hook
    sa.Column("format", sa.String(16), nullable=False),  # json, slack, discord, ntfy
    sa.Column("kinds", sa.Text()),  # ",blocked,done," (commas around each); NULL: every kind
    sa.Column("secret_env", sa.String(128)),  # the env var holding the signing secret
    sa.Column("card_id", sa.Integer()),  # scope: one card, one goal's cards, one profile
    sa.Column("goal_id", sa.Integer()),
    sa.Column("profile", sa.String(128)),
    sa.Column("created_by", sa.String(255)),
    _when("created_at"),
    sa.CheckConstraint("(url IS NULL) <> (command IS NULL)", name="one_target"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    # The outbox: one event for one subscription, written in the transaction of the change
    # that caused it, then sent (leased, retried with backoff) by a dispatcher after commit.
    _id(),
    sa.Column("event_id", sa.String(64), nullable=False),  # the same on every retry
    _fk("subscription_id", "subscriptions.id", ondelete="CASCADE", nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    _when("at"),
    sa.Column("card_id", sa.Integer()),
    sa.Column("goal_id", sa.Integer()),
    sa.Column("run_id", sa.Integer()),
    sa.Column("title", sa.Text()),  # the card's (or goal's) title and state at the event
    sa.Column("status", sa.String(16)),
    sa.Column("reason", sa.Text()),
    sa.Column("summary", sa.Text()),
    sa.Column("data", sa.JSON()),  # the event's details (outcome, attempt, error...)
    sa.Column("body", sa.Text()),  # the exact bytes sent, fixed at the first attempt
    sa.Column("state", sa.String(8), nullable=False),  # pending, sent, dead
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    _when("next_at"),
    sa.Column("lease_owner", sa.String(255)),
    _when("lease_until", nullable=True),
    sa.Column("answer", sa.Text()),  # the receiver's last answer, or the command's output
    sa.Column("error", sa.Text()),
    _when("sent_at", nullable=True),
    sa.CheckConstraint("state IN ('pending', 'sent', 'dead')", name="state"),
    sa.UniqueConstraint("event_id", "subscription_id"),
    sa.Index("ix_deliveries_due", "state", "next_at"),
    sa.Index("ix_deliveries_subscription", "subscription_id", "state"),
)
