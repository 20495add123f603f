"""The event history read in order: what `kanban events` prints and the dispatcher's log
follows. Read-only; events are appended by the verbs that change cards and runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kanban import views
from kanban.models import events

MAX_BATCH = 1000


def last_event_id(conn: Connection) -> int:
    """The newest event's id (0 on an empty board): follow from here for what comes next."""
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0))).scalar_one())


def events_after(
    conn: Connection,
    *,
    after_id: int = 0,
    card_id: int | None = None,
    kinds: Collection[str] = (),
    since: dt.datetime | None = None,
    limit: int = MAX_BATCH,
) -> list[views.EventView]:
    """Events with an id above `after_id`, oldest first, at most `limit` of them."""
    query = sa.select(events).where(events.c.id > after_id)
    if card_id is not None:
        query = query.where(events.c.card_id == card_id)
    if kinds:
        query = query.where(events.c.kind.in_(list(kinds)))
    if since is not None:
        query = query.where(events.c.at >= since)
    rows = conn.execute(query.order_by(events.c.id).limit(limit))
    return [views.EventView(**r._mapping) for r in rows]


def event_kinds(conn: Connection) -> list[str]:
    return sorted(str(k) for k in conn.execute(sa.select(events.c.kind).distinct()).scalars())
