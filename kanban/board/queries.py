"""Read-only questions about the board. Nothing here writes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kanban import views
from kanban.board import _rows
from kanban.models import cards, dependencies, events, runs
from kanban.states import CardStatus

get_card = _rows.get_card


def list_cards(
    conn: Connection,
    *,
    statuses: Collection[CardStatus] | None = None,
    profile: str | None = None,
    parent: int | None = None,
    search: str | None = None,
    include_archived: bool = False,
    limit: int | None = None,
) -> list[views.CardView]:
    query = sa.select(cards).order_by(cards.c.id)
    if statuses:
        query = query.where(cards.c.status.in_([s.value for s in statuses]))
    elif not include_archived:
        query = query.where(cards.c.status != CardStatus.ARCHIVED.value)
    if profile is not None:
        query = query.where(cards.c.profile == profile)
    if parent is not None:
        query = query.where(
            cards.c.id.in_(
                sa.select(dependencies.c.child_id).where(dependencies.c.parent_id == parent)
            )
        )
    if search:
        pattern = f"%{search.lower()}%"
        query = query.where(
            sa.or_(
                sa.func.lower(cards.c.title).like(pattern),
                sa.func.lower(cards.c.body).like(pattern),
            )
        )
    if limit is not None:
        query = query.limit(limit)
    return _rows.card_views(conn, conn.execute(query).all())


def children_of(conn: Connection, card_id: int) -> list[views.CardView]:
    rows = conn.execute(
        sa.select(cards)
        .join(dependencies, dependencies.c.child_id == cards.c.id)
        .where(dependencies.c.parent_id == card_id)
        .order_by(cards.c.id)
    ).all()
    return _rows.card_views(conn, rows)


def runs_of(conn: Connection, card_id: int) -> list[views.RunView]:
    _rows.card_row(conn, card_id)
    rows = conn.execute(sa.select(runs).where(runs.c.card_id == card_id).order_by(runs.c.id))
    return [_rows.run_view(r) for r in rows]


def get_run(conn: Connection, run_id: int) -> views.RunView | None:
    row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
    return _rows.run_view(row) if row else None


def live_runs(conn: Connection, *, host: str | None = None) -> list[views.RunView]:
    query = sa.select(runs).where(runs.c.outcome.is_(None)).order_by(runs.c.id)
    if host is not None:
        query = query.where(runs.c.host == host)
    return [_rows.run_view(r) for r in conn.execute(query)]


def events_of(conn: Connection, card_id: int, *, after_id: int = 0) -> list[views.EventView]:
    rows = conn.execute(
        sa.select(events)
        .where(events.c.card_id == card_id, events.c.id > after_id)
        .order_by(events.c.id)
    )
    return [views.EventView(**r._mapping) for r in rows]


def card_detail(conn: Connection, card_id: int) -> views.CardDetail:
    card = get_card(conn, card_id)
    parents = _rows.card_views(
        conn, conn.execute(sa.select(cards).where(cards.c.id.in_(card.parents))).all()
    )
    return views.CardDetail(
        card=card,
        parents=tuple(parents),
        children=tuple(children_of(conn, card_id)),
        runs=tuple(runs_of(conn, card_id)),
        events=tuple(events_of(conn, card_id)),
        comments=_rows.comments_of(conn, card_id),
    )


def status_summary(conn: Connection, *, now: dt.datetime) -> views.BoardStatus:
    counts = {s.value: 0 for s in CardStatus}
    for status, count in conn.execute(
        sa.select(cards.c.status, sa.func.count()).group_by(cards.c.status)
    ):
        counts[status] = count
    oldest = conn.execute(
        sa.select(sa.func.min(cards.c.ready_at)).where(cards.c.status == CardStatus.READY.value)
    ).scalar()
    waiting = conn.execute(
        sa.select(sa.func.count())
        .select_from(cards)
        .where(cards.c.status == CardStatus.READY.value)
        .where(sa.or_(cards.c.not_before.is_(None), cards.c.not_before <= now))
    ).scalar_one()
    if isinstance(oldest, str):  # SQLite hands aggregates back untyped
        oldest = dt.datetime.fromisoformat(oldest).replace(tzinfo=dt.UTC)
    elif isinstance(oldest, dt.datetime) and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)
    return views.BoardStatus(
        counts=counts,
        running=tuple(live_runs(conn)),
        oldest_ready_at=oldest,
        ready_waiting=waiting,
        now=now,
    )
