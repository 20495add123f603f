"""Read-only questions about the board. Nothing here writes."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kanban import views
from kanban.board import _rows, releases, usage
from kanban.models import cards, dependencies, events, runs
from kanban.models import dispatchers as models_dispatchers
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
    where: list[sa.ColumnElement[bool]] = []
    if statuses:
        where.append(cards.c.status.in_([s.value for s in statuses]))
    elif not include_archived:
        where.append(cards.c.status != CardStatus.ARCHIVED.value)
    if profile is not None:
        where.append(cards.c.profile == profile)
    if parent is not None:
        where.append(
            cards.c.id.in_(
                sa.select(dependencies.c.child_id).where(dependencies.c.parent_id == parent)
            )
        )
    if search:
        pattern = f"%{search.lower()}%"
        where.append(
            sa.or_(
                sa.func.lower(cards.c.title).like(pattern),
                sa.func.lower(cards.c.body).like(pattern),
            )
        )
    chosen = sa.select(cards.c.id).where(*where).order_by(cards.c.id).limit(limit)
    rows = conn.execute(sa.select(cards).where(*where).order_by(cards.c.id).limit(limit)).all()
    # Two statements whatever the number of cards: the cards, then the parents of the same
    # selection (not one statement per 500 ids).
    parents: dict[int, list[int]] = defaultdict(list)
    if rows:
        edges = sa.select(dependencies.c.child_id, dependencies.c.parent_id).order_by(
            dependencies.c.parent_id
        )
        if where or limit is not None:
            edges = edges.where(dependencies.c.child_id.in_(chosen))
        for child, parent_id in conn.execute(edges):
            parents[child].append(parent_id)
    return _rows.views_with_parents(rows, parents)


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


def live_run_of(conn: Connection, card_id: int, *, token: str) -> views.RunView | None:
    """The live run of `card_id` that holds `token`, if any."""
    row = conn.execute(
        sa.select(runs).where(
            runs.c.card_id == card_id,
            runs.c.token == _rows.digest(token),  # the board keeps digests, not tokens
            runs.c.outcome.is_(None),
        )
    ).first()
    return _rows.run_view(row) if row else None


def live_runs(conn: Connection, *, host: str | None = None) -> list[views.RunView]:
    # No ORDER BY in SQL: ordering by id makes SQLite scan every run ever, instead of the
    # partial index of live runs. There are few live runs; sort them here.
    query = sa.select(runs).where(runs.c.outcome.is_(None))
    if host is not None:
        query = query.where(runs.c.host == host)
    return sorted((_rows.run_view(r) for r in conn.execute(query)), key=lambda r: r.id)


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
        spend=usage.spend(conn),
        spend_24h=usage.spend(conn, since=now - dt.timedelta(hours=24)),
    )


def ready_candidates(
    conn: Connection,
    *,
    now: dt.datetime,
    profile: str | None,
    limit: int,
    offset: int = 0,
    any_profile: bool = False,
    host: str | None = None,
    stale_before: dt.datetime | None = None,
) -> list[views.CardView]:
    """Cards a claim would accept right now, best first: ready, not backing off, parents done.
    `offset` skips that many of them (the next page). With `host` (and `stale_before`, the
    claim's now - ttl), also as the claim sees them there: no earlier run's agent may still
    be alive (board.releases)."""
    query = (
        sa.select(cards)
        .where(cards.c.status == CardStatus.READY.value)
        .where(sa.or_(cards.c.not_before.is_(None), cards.c.not_before <= now))
        .where(~_rows.unfinished_parent(cards.c.id))
        .order_by(cards.c.priority.desc(), cards.c.ready_at, cards.c.id)
        .limit(limit)
        .offset(offset)
    )
    if host is not None:
        stale = stale_before if stale_before is not None else now
        query = query.where(~releases.unreleased(cards.c.id, host=host, stale=stale))
    if not any_profile:
        query = query.where(
            cards.c.profile.is_(None) if profile is None else cards.c.profile == profile
        )
    return _rows.card_views(conn, conn.execute(query).all())


# A loose index scan: one index seek per distinct profile instead of a walk over every ready
# card (a GROUP BY read all 25,000 ready cards of a 100k board: 4 ms a tick).
_READY_PROFILES = sa.text(
    """
    WITH RECURSIVE seen(profile) AS (
        SELECT (SELECT min(profile) FROM cards WHERE status = 'ready')
        UNION ALL
        SELECT (SELECT min(profile) FROM cards WHERE status = 'ready' AND profile > seen.profile)
        FROM seen WHERE seen.profile IS NOT NULL
    )
    SELECT profile FROM seen WHERE profile IS NOT NULL
    """
)


def ready_profiles(conn: Connection) -> list[str]:
    """The named profiles that have at least one ready card (some may be backing off)."""
    return [r[0] for r in conn.execute(_READY_PROFILES)]


def running(conn: Connection) -> list[tuple[views.RunView, views.CardView]]:
    """Every live run (all hosts) with its card."""
    # No ORDER BY in SQL: ordering by id makes SQLite scan every run ever, instead of the
    # partial index of live runs. There are few live runs; sort them here.
    rows = sorted(
        conn.execute(
            sa.select(runs, cards.c.title, cards.c.paths, cards.c.timeout_s)
            .join(cards, cards.c.id == runs.c.card_id)
            .where(runs.c.outcome.is_(None))
        ).all(),
        key=lambda r: r.id,
    )
    card_ids = [r.card_id for r in rows]
    found = (
        {
            c.id: c
            for c in _rows.card_views(
                conn, conn.execute(sa.select(cards).where(cards.c.id.in_(card_ids))).all()
            )
        }
        if card_ids
        else {}
    )
    return [(_rows.run_view(r), found[r.card_id]) for r in rows]


# The first backoff to end, read from the small index of cards that have one. Any card's,
# not only ready ones: asking for `status = 'ready'` too made SQLite walk the whole ready
# queue instead (4 ms a tick at 100k cards); a cancelled card's stale backoff costs at most
# one wake-up with nothing to do.
_NEXT_BACKOFF = sa.select(sa.func.min(cards.c.not_before)).where(
    cards.c.not_before.is_not(None),
    cards.c.not_before > sa.bindparam("now", type_=cards.c.not_before.type),
)


def next_due(conn: Connection, *, now: dt.datetime) -> dt.datetime | None:
    """The next moment something becomes due without any write: a backoff ending, a lease
    expiring. The dispatcher sets a timer for it instead of waiting for its periodic tick."""
    backoff = conn.execute(_NEXT_BACKOFF, {"now": now}).scalar()
    lease = conn.execute(
        sa.select(sa.func.min(runs.c.lease_expires_at)).where(runs.c.outcome.is_(None))
    ).scalar()
    moments = [_as_utc(m) for m in (backoff, lease) if m is not None]
    return min(moments) if moments else None


def _as_utc(value: dt.datetime | str) -> dt.datetime:
    if isinstance(value, str):  # SQLite hands aggregates back untyped
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def dispatchers(conn: Connection) -> list[dict[str, object]]:
    rows = conn.execute(
        sa.select(models_dispatchers).order_by(models_dispatchers.c.heartbeat_at.desc())
    )
    return [dict(r._mapping) for r in rows]


def recent_cards(conn: Connection, *, status: CardStatus, limit: int) -> list[views.CardView]:
    """The `limit` cards of `status` changed last, newest first (a folded column's peek)."""
    query = (
        sa.select(cards)
        .where(cards.c.status == status.value)
        .order_by(cards.c.updated_at.desc(), cards.c.id.desc())
        .limit(limit)
    )
    return _rows.card_views(conn, conn.execute(query).all())


def cost_by_card(conn: Connection, card_ids: Collection[int]) -> dict[int, float]:
    """What the runs of each card cost together, for the cards whose agents reported a cost."""
    found: dict[int, float] = {}
    for chunk in _rows.chunks(sorted(card_ids)):
        query = (
            sa.select(runs.c.card_id, sa.func.sum(runs.c.cost_usd))
            .where(runs.c.card_id.in_(chunk), runs.c.cost_usd.is_not(None))
            .group_by(runs.c.card_id)
        )
        found.update({int(card): float(total) for card, total in conn.execute(query)})
    return found
