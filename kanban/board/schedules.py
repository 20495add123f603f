"""Verbs on schedules and their fires. What a fire creates is decided by `kanban.schedules`.

A fire is a row (schedule, fire time) under a unique constraint, inserted in the same
transaction as the card or goal it creates: whichever dispatcher inserts it first fires,
every other one (on any host, after any restart) finds the row and does nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from kanban import errors, views
from kanban.models import cards, goals, schedule_fires, schedules
from kanban.states import GOAL_FINISHED, OPEN, CatchUp, Overlap, ScheduleKind

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _view(row: Row[Any]) -> views.ScheduleView:
    return views.ScheduleView(
        **{f: row._mapping[f] for f in views.ScheduleView.__dataclass_fields__}
    )


def _fire_view(row: Row[Any]) -> views.FireView:
    return views.FireView(**{f: row._mapping[f] for f in views.FireView.__dataclass_fields__})


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise errors.UsageError(
            f"schedule name {name!r} is not valid: letters, digits, '.', '-', '_' (up to 128)"
        )
    return name


def _row(conn: Connection, name: str) -> Row[Any]:
    row = conn.execute(sa.select(schedules).where(schedules.c.name == name)).first()
    if row is None:
        raise errors.ScheduleNotFound(name)
    return row


def get(conn: Connection, name: str) -> views.ScheduleView:
    return _view(_row(conn, name))


def list_schedules(conn: Connection) -> list[views.ScheduleView]:
    return [_view(r) for r in conn.execute(sa.select(schedules).order_by(schedules.c.name))]


def add(
    conn: Connection,
    *,
    name: str,
    spec: str,
    tz: str,
    kind: ScheduleKind,
    template: Mapping[str, Any],
    overlap: Overlap,
    catch_up: CatchUp,
    now: dt.datetime,
    actor: str | None = None,
) -> views.ScheduleView:
    """A new schedule. Its fires are counted from now: nothing before it is caught up."""
    check_name(name)
    if conn.execute(sa.select(schedules.c.id).where(schedules.c.name == name)).first():
        raise errors.ScheduleError(
            f"a schedule named {name!r} exists; pick another name or `kanban cron rm {name}`"
        )
    conn.execute(
        sa.insert(schedules).values(
            name=name,
            spec=spec,
            tz=tz,
            kind=kind.value,
            template=dict(template),
            overlap=overlap.value,
            catch_up=catch_up.value,
            paused=False,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
    )
    return get(conn, name)


def remove(conn: Connection, *, name: str) -> views.ScheduleView:
    """Delete the schedule and its fire history; what it created stays on the board."""
    row = _row(conn, name)
    conn.execute(sa.delete(schedule_fires).where(schedule_fires.c.schedule_id == row.id))
    conn.execute(sa.delete(schedules).where(schedules.c.id == row.id))
    return _view(row)


def set_paused(
    conn: Connection, *, name: str, paused: bool, now: dt.datetime
) -> views.ScheduleView:
    """Pause or resume. Resuming counts fires from now: those while paused are not caught up."""
    row = _row(conn, name)
    values: dict[str, Any] = {"paused": paused, "updated_at": now}
    if not paused and row.paused:
        values["last_fire_at"] = max(row.last_fire_at or now, now)
    conn.execute(sa.update(schedules).where(schedules.c.id == row.id).values(**values))
    return get(conn, name)


def claim_fire(
    conn: Connection, *, schedule_id: int, fire_at: dt.datetime, now: dt.datetime, manual: bool
) -> int | None:
    """Insert the fire row; None when this (schedule, fire time) already fired. The unique
    constraint decides, in a savepoint, so the caller's transaction carries on either way."""
    try:
        with conn.begin_nested():
            fire_id: int = conn.execute(
                sa.insert(schedule_fires)
                .values(schedule_id=schedule_id, fire_at=fire_at, at=now, manual=manual)
                .returning(schedule_fires.c.id)
            ).scalar_one()
            return fire_id
    except sa.exc.IntegrityError:
        return None


def settle_fire(
    conn: Connection,
    *,
    fire_id: int,
    card_id: int | None = None,
    goal_id: int | None = None,
    skipped: str | None = None,
) -> views.FireView:
    """Record what the fire made, or why it made nothing."""
    conn.execute(
        sa.update(schedule_fires)
        .where(schedule_fires.c.id == fire_id)
        .values(card_id=card_id, goal_id=goal_id, skipped=skipped)
    )
    row = conn.execute(sa.select(schedule_fires).where(schedule_fires.c.id == fire_id)).one()
    return _fire_view(row)


def open_from_earlier_fire(conn: Connection, *, schedule_id: int, fire_id: int) -> str | None:
    """'card 12' or 'goal 3' when an earlier fire of the schedule made something still open."""
    card = conn.execute(
        sa.select(cards.c.id)
        .join(schedule_fires, schedule_fires.c.card_id == cards.c.id)
        .where(schedule_fires.c.schedule_id == schedule_id, schedule_fires.c.id != fire_id)
        .where(cards.c.status.in_([s.value for s in OPEN]))
        .order_by(cards.c.id.desc())
        .limit(1)
    ).scalar()
    if card is not None:
        return f"card {card}"
    goal = conn.execute(
        sa.select(goals.c.id)
        .join(schedule_fires, schedule_fires.c.goal_id == goals.c.id)
        .where(schedule_fires.c.schedule_id == schedule_id, schedule_fires.c.id != fire_id)
        .where(goals.c.status.not_in([s.value for s in GOAL_FINISHED]))
        .order_by(goals.c.id.desc())
        .limit(1)
    ).scalar()
    return f"goal {goal}" if goal is not None else None


def advance(conn: Connection, *, schedule_id: int, to: dt.datetime, now: dt.datetime) -> None:
    """Every fire up to `to` has been dealt with (the mark only moves forward)."""
    conn.execute(
        sa.update(schedules)
        .where(schedules.c.id == schedule_id)
        .where(sa.or_(schedules.c.last_fire_at.is_(None), schedules.c.last_fire_at < to))
        .values(last_fire_at=to, updated_at=now)
    )


def fires_of(conn: Connection, *, schedule_id: int, limit: int = 20) -> list[views.FireView]:
    """The schedule's most recent fires, newest first."""
    rows = conn.execute(
        sa.select(schedule_fires)
        .where(schedule_fires.c.schedule_id == schedule_id)
        .order_by(schedule_fires.c.fire_at.desc())
        .limit(limit)
    )
    return [_fire_view(r) for r in rows]
