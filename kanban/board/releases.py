"""Verbs on what outlives a run's end: its processes, and the board's own identity.

A run ends in the database (a person cancels it, its agent reports, a lease expires) before
its processes are gone: the supervisor notices at its next heartbeat, stops the agent and
commits what it left. A card's next run waits until no process of an earlier run can still
be alive (one live agent per card): `released_at` says so. It is written by the run's own
supervisor once its agent is confirmed gone, or by a dispatcher of the run's host that
found supervisor and agent gone by identity (kanban.liveness). A run of another host is
taken as released one lease TTL after its lease expired: its supervisor stops its agent
when no heartbeat has reached the board for a TTL (kanban.watching.Heartbeat).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kanban import errors, views
from kanban.board import _rows
from kanban.board._rows import run_view
from kanban.models import board_identity, runs

logger = logging.getLogger(__name__)


def unreleased(card_id: Any, *, host: Any, stale: Any) -> sa.Exists:
    """An ended run of the card whose processes may still be alive (for the claim)."""
    return (
        sa.select(runs.c.id)
        .where(runs.c.card_id == card_id)
        .where(runs.c.outcome.is_not(None), runs.c.released_at.is_(None))
        # A run that ended before its supervisor checked in never had an agent: the check-in
        # is fenced like the end, and the agent starts only after it.
        .where(runs.c.supervisor_pid.is_not(None))
        .where(sa.or_(runs.c.host == host, runs.c.lease_expires_at > stale))
        .exists()
    )


def release_run(
    conn: Connection, *, run_id: int, token: str | None = None, now: dt.datetime, how: str
) -> bool:
    """No process of the ended run `run_id` can still be alive (`how` says who knows).
    With `token`, only the run holding it is released. False when already released."""
    query = (
        sa.update(runs)
        .where(runs.c.id == run_id, runs.c.outcome.is_not(None), runs.c.released_at.is_(None))
        .values(released_at=now)
        .returning(runs.c.card_id)
    )
    if token is not None:
        # A supervisor releases its own run; not one reclaimed for an expired lease: that one
        # counts as released by time (another host) or by its host's dispatcher, and a late
        # supervisor changes nothing of it.
        query = query.where(runs.c.token == _rows.digest(token), runs.c.outcome != "reclaimed")
    released = conn.execute(query).first() is not None
    if released:
        logger.info("run %s released (%s)", run_id, how)
    return released


def unreleased_runs(conn: Connection, *, host: str) -> list[views.RunView]:
    """Ended runs of `host` whose processes are not yet confirmed gone."""
    rows = conn.execute(
        sa.select(runs).where(
            runs.c.host == host,
            runs.c.outcome.is_not(None),
            runs.c.released_at.is_(None),
            runs.c.supervisor_pid.is_not(None),
        )
    )
    return sorted((run_view(r) for r in rows), key=lambda r: r.id)


def board_id(conn: Connection) -> str:
    """The board's own short id (migration 0005 gave every board one)."""
    value = conn.execute(sa.select(board_identity.c.board_id)).scalar()
    if value is None:
        raise errors.SchemaError("this board has no identity row; run `kanban db upgrade`")
    return str(value)
