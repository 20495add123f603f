"""Notifications on the board: subscriptions, and the outbox of deliveries they make.

A change that matters to a person (a card blocked, a goal done...) writes its deliveries in
the same transaction as the change itself, so a crash between the change and the message
loses nothing. `capture` is one set-based `INSERT ... SELECT` over the subscriptions that
match: with no subscription it inserts nothing and costs one cheap statement, and events
that no one can subscribe to (claims, heartbeats) cost none. Dispatchers then claim due
deliveries on a lease (`claim_due`, SKIP LOCKED on PostgreSQL), send them after commit, and
record each attempt (`finish_attempt`); `kanban.notify` does the sending.

The views handed out here live in this module (not `views.py`): only notifications use them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kanban import errors
from kanban.board import subscriptions as subscriptions_
from kanban.models import cards, deliveries, dispatchers, goals, subscriptions

# Re-exported for the senders: what can be subscribed to, and in which formats.
KINDS = subscriptions_.KINDS
FORMATS = subscriptions_.FORMATS
TEST_KIND = "test"  # `kanban notify test`: a sample, never stored
PENDING, SENT, DEAD = "pending", "sent", "dead"
_CRASHES = frozenset({"crashed", "reclaimed", "timed_out", "stalled"})


@dataclasses.dataclass(frozen=True, slots=True)
class DeliveryView:
    id: int
    event_id: str
    subscription: str
    kind: str
    at: dt.datetime
    card_id: int | None
    goal_id: int | None
    run_id: int | None
    title: str | None
    status: str | None
    reason: str | None
    summary: str | None
    data: Mapping[str, Any]
    body: str | None
    state: str
    attempts: int
    next_at: dt.datetime
    answer: str | None
    error: str | None
    sent_at: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """A claimed delivery and where it goes; `owner` fences the attempt's result."""

    delivery: DeliveryView
    target: subscriptions_.SubscriptionView
    owner: str


# ------------------------------------------------------------------------ what is captured


def kinds_of(kind: str, data: Mapping[str, Any]) -> tuple[str, ...]:
    """The notification kinds a card event is (pure): none for most events."""
    if kind == "run_ended":
        found = ["crashed"] if data.get("outcome") in _CRASHES else []
        status = data.get("card_status")
        if status in ("review", "done"):
            found.append(status)
        elif status == "blocked":
            if data.get("outcome") != "blocked":
                found.append("failed")  # the retry budget ran out
            elif str(data.get("error") or "").startswith("cost cap reached"):
                found += ["blocked", "cost_cap"]
            else:
                found.append("blocked")
        return tuple(found)
    if kind in ("blocked", "failed", "done"):  # a person moved the card
        return (kind,)
    return ()


def goal_kinds(status: str, reason: str | None, *, auto: bool) -> tuple[str, ...]:
    if status == "proposed":
        return () if auto else ("approval",)
    if status == "done":
        return ("goal_done",)
    if status == "blocked":
        budget = (reason or "").startswith("the cost budget is spent")
        return ("goal_blocked", "cost_cap") if budget else ("goal_blocked",)
    return ()


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def _matches(kind: Any) -> sa.ColumnElement[bool]:
    return sa.or_(
        subscriptions.c.kinds.is_(None),
        subscriptions.c.kinds.like(sa.literal("%,") + kind + sa.literal(",%")),
    )


_COLUMNS = [
    "event_id",
    "subscription_id",
    "kind",
    "at",
    "card_id",
    "goal_id",
    "run_id",
    "title",
    "status",
    "reason",
    "summary",
    "data",
    "state",
    "attempts",
    "next_at",
]


def _fixed() -> list[Any]:
    return [
        sa.bindparam("event_id", type_=sa.String()),
        subscriptions.c.id,
        sa.bindparam("kind", type_=sa.String()),
        sa.bindparam("at", type_=deliveries.c.at.type),
    ]


def _tail() -> list[Any]:
    return [
        sa.bindparam("data", type_=sa.JSON()),
        sa.literal(PENDING),
        sa.literal(0),
        sa.bindparam("at", type_=deliveries.c.at.type),
    ]


_CARD_ID = sa.bindparam("card_id", type_=sa.Integer())
_CAPTURE_CARD = sa.insert(deliveries).from_select(
    _COLUMNS,
    sa.select(
        *_fixed(),
        cards.c.id,
        cards.c.goal_id,
        sa.bindparam("run_id", type_=sa.Integer()),
        cards.c.title,
        cards.c.status,
        cards.c.reason,
        cards.c.summary,
        *_tail(),
    )
    .select_from(subscriptions.join(cards, cards.c.id == _CARD_ID))
    .where(_matches(sa.bindparam("kind", type_=sa.String())))
    .where(sa.or_(subscriptions.c.card_id.is_(None), subscriptions.c.card_id == cards.c.id))
    .where(sa.or_(subscriptions.c.goal_id.is_(None), subscriptions.c.goal_id == cards.c.goal_id))
    .where(sa.or_(subscriptions.c.profile.is_(None), subscriptions.c.profile == cards.c.profile)),
)
_GOAL_ID = sa.bindparam("goal_id", type_=sa.Integer())
_CAPTURE_GOAL = sa.insert(deliveries).from_select(
    _COLUMNS,
    sa.select(
        *_fixed(),
        sa.null(),
        goals.c.id,
        sa.null(),
        goals.c.objective,
        goals.c.status,
        goals.c.reason,
        sa.null(),
        *_tail(),
    )
    .select_from(subscriptions.join(goals, goals.c.id == _GOAL_ID))
    .where(_matches(sa.bindparam("kind", type_=sa.String())))
    .where(subscriptions.c.card_id.is_(None), subscriptions.c.profile.is_(None))
    .where(sa.or_(subscriptions.c.goal_id.is_(None), subscriptions.c.goal_id == goals.c.id)),
)
_CAPTURE_BOARD = sa.insert(deliveries).from_select(
    _COLUMNS,
    sa.select(
        *_fixed(),
        sa.null(),
        sa.null(),
        sa.null(),
        sa.bindparam("title", type_=sa.Text()),
        sa.null(),
        sa.bindparam("reason", type_=sa.Text()),
        sa.null(),
        *_tail(),
    )
    .where(_matches(sa.bindparam("kind", type_=sa.String())))
    .where(
        subscriptions.c.card_id.is_(None),
        subscriptions.c.goal_id.is_(None),
        subscriptions.c.profile.is_(None),
    )
    # The event id is derived from what happened, so a second detection inserts nothing.
    .where(
        ~sa.exists().where(
            deliveries.c.event_id == sa.bindparam("event_id", type_=sa.String()),
            deliveries.c.subscription_id == subscriptions.c.id,
        )
    ),
)


def capture(
    conn: Connection,
    *,
    kind: str,
    now: dt.datetime,
    card_id: int | None = None,
    run_id: int | None = None,
    data: Mapping[str, Any] | None = None,
) -> None:
    """Put a card event into the outbox of every subscription that wants it (same txn)."""
    if card_id is None:
        return
    for notify_kind in kinds_of(kind, data or {}):
        conn.execute(
            _CAPTURE_CARD,
            {
                "event_id": new_event_id(),
                "kind": notify_kind,
                "at": now,
                "card_id": card_id,
                "run_id": run_id,
                "data": dict(data or {}),
            },
        )


def capture_goal(
    conn: Connection, *, goal_id: int, status: str, reason: str | None, auto: bool, now: dt.datetime
) -> None:
    for notify_kind in goal_kinds(status, reason, auto=auto):
        conn.execute(
            _CAPTURE_GOAL,
            {
                "event_id": new_event_id(),
                "kind": notify_kind,
                "at": now,
                "goal_id": goal_id,
                "data": {"status": status},
            },
        )


def silent_dispatchers(
    conn: Connection, *, now: dt.datetime, me: str | None = None
) -> list[dict[str, Any]]:
    """Dispatchers that have not beaten for three intervals (at least two minutes) and did
    not say they stopped."""
    rows = conn.execute(sa.select(dispatchers).where(dispatchers.c.stopped_at.is_(None))).all()
    quiet = []
    for row in rows:
        allowed = max(3 * row.interval_s, 120.0)
        if row.name != me and (now - row.heartbeat_at).total_seconds() > allowed:
            quiet.append(dict(row._mapping))
    return quiet


def capture_silent(conn: Connection, *, dispatcher: Mapping[str, Any], now: dt.datetime) -> None:
    beat = dispatcher["heartbeat_at"]
    conn.execute(
        _CAPTURE_BOARD,
        {
            # One event per silence: the same name and last beat never notify twice.
            "event_id": f"evt_silent_{uuid.uuid5(uuid.NAMESPACE_URL, dispatcher['name']).hex}"
            f"_{int(beat.timestamp())}",
            "kind": "silent",
            "at": now,
            "title": f"dispatcher {dispatcher['name']}",
            "reason": f"no heartbeat since {beat.isoformat()}",
            "data": {
                "dispatcher": dispatcher["name"],
                "host": dispatcher["host"],
                "pid": dispatcher["pid"],
                "heartbeat_at": beat.isoformat(),
            },
        },
    )


# ---------------------------------------------------------------------------- deliveries


def _delivery_view(row: Any) -> DeliveryView:
    m = row._mapping
    return DeliveryView(
        **{f: m[f] for f in DeliveryView.__dataclass_fields__ if f not in ("subscription", "data")},
        subscription=m["name"],
        data=m["data"] or {},
    )


_WITH_NAME = deliveries.join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)


def list_deliveries(
    conn: Connection, *, name: str | None = None, state: str | None = None, limit: int = 50
) -> list[DeliveryView]:
    query = sa.select(deliveries, subscriptions.c.name).select_from(_WITH_NAME)
    if name is not None:
        query = query.where(
            subscriptions.c.id == subscriptions_.get_subscription(conn, name=name).id
        )
    if state is not None:
        query = query.where(deliveries.c.state == state)
    rows = conn.execute(query.order_by(deliveries.c.id.desc()).limit(limit))
    return [_delivery_view(r) for r in rows]


def outbox_counts(conn: Connection) -> dict[str, int]:
    """Deliveries waiting and given up (for `kanban status`)."""
    rows = conn.execute(
        sa.select(deliveries.c.state, sa.func.count())
        .where(deliveries.c.state != SENT)
        .group_by(deliveries.c.state)
    )
    found: dict[str, int] = dict((r[0], r[1]) for r in rows)
    return {PENDING: found.get(PENDING, 0), DEAD: found.get(DEAD, 0)}


def next_due(conn: Connection) -> dt.datetime | None:
    due: dt.datetime | None = conn.execute(
        sa.select(sa.func.min(deliveries.c.next_at)).where(deliveries.c.state == PENDING)
    ).scalar()
    return due.replace(tzinfo=dt.UTC) if due is not None and due.tzinfo is None else due


def claim_due(
    conn: Connection,
    *,
    now: dt.datetime,
    owner: str,
    lease: float,
    render: Callable[[DeliveryView, subscriptions_.SubscriptionView], str],
    limit: int = 20,
) -> list[Job]:
    """Lease up to `limit` due deliveries to `owner`; each gets its body fixed by `render`
    the first time (then every retry sends the same bytes)."""
    claimable = (
        deliveries.c.state == PENDING,
        deliveries.c.next_at <= now,
        sa.or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now),
    )
    due = (
        sa.select(deliveries.c.id)
        .where(*claimable)
        .order_by(deliveries.c.next_at, deliveries.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = sorted(
        conn.execute(
            sa.update(deliveries)
            # Checked again on the row itself: under READ COMMITTED a writer that waited for
            # a row re-reads it, and must then see that another dispatcher leased it.
            .where(deliveries.c.id.in_(due.scalar_subquery()), *claimable)
            .values(lease_owner=owner, lease_until=now + dt.timedelta(seconds=lease))
            .returning(deliveries.c.id)
        ).scalars()
    )
    if not ids:
        return []
    rows = conn.execute(
        sa.select(deliveries, subscriptions.c.name)
        .select_from(_WITH_NAME)
        .where(deliveries.c.id.in_(ids))
        .order_by(deliveries.c.id)
    ).all()
    wanted = {r.subscription_id for r in rows}
    subs = {
        r.id: subscriptions_.subscription_view(r)
        for r in conn.execute(sa.select(subscriptions).where(subscriptions.c.id.in_(wanted)))
    }
    jobs = []
    for row in rows:
        delivery = _delivery_view(row)
        target = subs[row.subscription_id]
        if delivery.body is None:
            body = render(delivery, target)
            conn.execute(sa.update(deliveries).where(deliveries.c.id == row.id).values(body=body))
            delivery = dataclasses.replace(delivery, body=body)
        jobs.append(Job(delivery=delivery, target=target, owner=owner))
    return jobs


def finish_attempt(
    conn: Connection,
    *,
    delivery_id: int,
    owner: str,
    now: dt.datetime,
    sent: bool,
    retry_at: dt.datetime | None,
    answer: str | None = None,
    error: str | None = None,
) -> bool:
    """Record one attempt; `retry_at` None after a failure gives up (dead). False when the
    lease was lost meanwhile (another dispatcher owns it now): nothing is written."""
    state = SENT if sent else (PENDING if retry_at is not None else DEAD)
    values: dict[str, Any] = {
        "state": state,
        "attempts": deliveries.c.attempts + 1,
        "answer": answer,
        "error": None if sent else error,
        "lease_owner": None,
        "lease_until": None,
    }
    if sent:
        values["sent_at"] = now
    elif retry_at is not None:
        values["next_at"] = retry_at
    done = conn.execute(
        sa.update(deliveries)
        .where(
            deliveries.c.id == delivery_id,
            deliveries.c.lease_owner == owner,
            deliveries.c.state == PENDING,
        )
        .values(**values)
    )
    return bool(done.rowcount)


def redeliver(conn: Connection, *, delivery_id: int, now: dt.datetime) -> DeliveryView:
    """A dead (or sent) delivery goes out once more, with the same event id and body."""
    done = conn.execute(
        sa.update(deliveries)
        .where(deliveries.c.id == delivery_id, deliveries.c.state != PENDING)
        .values(state=PENDING, next_at=now, at=now, lease_owner=None, lease_until=None)
    )
    if not done.rowcount:
        raise errors.UsageError(
            f"no finished delivery {delivery_id}; see `kanban notify log` (pending ones retry "
            "on their own)"
        )
    row = conn.execute(
        sa.select(deliveries, subscriptions.c.name)
        .select_from(_WITH_NAME)
        .where(deliveries.c.id == delivery_id)
    ).one()
    return _delivery_view(row)


def prune(conn: Connection, *, before: dt.datetime) -> int:
    """Forget deliveries sent before `before` (dead ones stay until a person looks)."""
    done = conn.execute(
        sa.delete(deliveries).where(deliveries.c.state == SENT, deliveries.c.sent_at < before)
    )
    return int(done.rowcount or 0)
