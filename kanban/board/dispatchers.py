"""The dispatchers' own liveness rows: who ticks this board, and when it last did."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kanban.models import dispatchers


def beat(
    conn: Connection,
    *,
    name: str,
    host: str,
    pid: int,
    started_at: dt.datetime,
    now: dt.datetime,
    interval: float,
    version: str,
    last_tick: dict[str, Any] | None = None,
    clock_offset: float | None = None,
) -> None:
    """Record a dispatcher's tick; `clock_offset` is its host's clock minus the database's."""
    values = {
        "host": host,
        "pid": pid,
        "started_at": started_at,
        "heartbeat_at": now,
        "stopped_at": None,
        "interval_s": interval,
        "version": version,
        "last_tick": last_tick,
        "clock_offset_s": clock_offset,
    }
    updated = conn.execute(
        sa.update(dispatchers).where(dispatchers.c.name == name).values(**values)
    ).rowcount
    if not updated:
        conn.execute(sa.insert(dispatchers).values(name=name, **values))


def stopped(conn: Connection, *, name: str, now: dt.datetime) -> None:
    conn.execute(sa.update(dispatchers).where(dispatchers.c.name == name).values(stopped_at=now))


def forget_old(conn: Connection, *, before: dt.datetime) -> None:
    """Drop rows of dispatchers not heard from since `before` (a day, say)."""
    conn.execute(sa.delete(dispatchers).where(dispatchers.c.heartbeat_at < before))
