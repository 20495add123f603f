"""Shared helpers for the board verbs: rows to views, events, parent checks, limits."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from kanban import errors, views
from kanban.board import outbox
from kanban.models import cards, comments, dependencies, events, runs
from kanban.states import CardStatus, check_move

# A parent is satisfied when it is done (an archived card was done or had no open children).
SATISFIED = (CardStatus.DONE.value, CardStatus.ARCHIVED.value)

MAX_TITLE = 500
MAX_BODY = 1_000_000
MAX_PRIORITY = 1_000_000
CHUNK = 500


def chunks(ids: Sequence[int], size: int = CHUNK) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


_PARENT = cards.alias("parent")  # built once: statements reuse it (and their cache keys)


def unfinished_parent(child_id: Any) -> sa.Exists:
    """EXISTS a parent of `child_id` that is not yet done: the parents-first check."""
    return (
        sa.exists()
        .where(dependencies.c.child_id == child_id)
        .where(_PARENT.c.id == dependencies.c.parent_id)
        # Constants written into the SQL, not an expanding IN parameter: no per-execution
        # statement rewriting on the claim's hot path.
        .where(sa.and_(*(_PARENT.c.status != sa.literal_column(f"'{s}'") for s in SATISFIED)))
    )


# Serialises changes to the shape of the dependency graph on PostgreSQL (cycle checks).
GRAPH_LOCK = 0x6B616E63


def lock_cards(conn: Connection, ids: Iterable[int], *, share: bool = False) -> None:
    """Lock these cards' rows until commit (PostgreSQL), in id order so that two writers never
    deadlock on each other. Readiness is decided from other rows (a card's parents), and under
    READ COMMITTED two writers could each decide on a stale view: two parents finishing at
    once would each see the other still running, and neither would promote their child.
    SQLite needs none of this: BEGIN IMMEDIATE already serialises its writers."""
    wanted = sorted(set(ids))
    if conn.dialect.name != "postgresql" or not wanted:
        return
    for part in chunks(wanted):
        conn.execute(
            sa.select(cards.c.id)
            .where(cards.c.id.in_(part))
            .order_by(cards.c.id)
            .with_for_update(read=share)
        ).all()


def lock_parents(conn: Connection, card_id: int) -> None:
    """Hold `card_id`'s parents still (shared) while deciding whether it may be ready."""
    if conn.dialect.name == "postgresql":
        parents = conn.execute(
            sa.select(dependencies.c.parent_id).where(dependencies.c.child_id == card_id)
        ).scalars()
        lock_cards(conn, parents, share=True)


def lock_children(conn: Connection, parent_ids: Sequence[int]) -> None:
    """Lock the children of `parent_ids` before deciding whether to promote them."""
    if conn.dialect.name == "postgresql" and parent_ids:
        children = conn.execute(
            sa.select(dependencies.c.child_id).where(dependencies.c.parent_id.in_(list(parent_ids)))
        ).scalars()
        lock_cards(conn, children)


def lock_graph(conn: Connection) -> None:
    """One writer at a time changes the graph's shape (PostgreSQL), so cycle checks hold."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": GRAPH_LOCK})


_PARENTS_OF = (
    sa.select(dependencies.c.child_id, dependencies.c.parent_id)
    .where(dependencies.c.child_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(dependencies.c.parent_id)
)


def parents_column(child_id: Any, *, postgres: bool) -> sa.Label[Any]:
    """The parents of `child_id` as one comma-separated string (a scalar subquery), for reads
    that want a card and its parents in one statement; `split_parents` reads it back."""
    concat = sa.func.string_agg if postgres else sa.func.group_concat
    return (
        sa.select(concat(sa.cast(dependencies.c.parent_id, sa.Text), sa.literal_column("','")))
        .where(dependencies.c.child_id == child_id)
        .scalar_subquery()
        .label("parent_list")
    )


def split_parents(text: str | None) -> tuple[int, ...]:
    return tuple(sorted(int(p) for p in text.split(","))) if text else ()


def parents_of(conn: Connection, card_ids: Sequence[int]) -> dict[int, tuple[int, ...]]:
    found: dict[int, list[int]] = defaultdict(list)
    for part in chunks(list(card_ids)):
        rows = conn.execute(_PARENTS_OF, {"ids": list(part)})
        for child, parent in rows:
            found[child].append(parent)
    return {cid: tuple(found.get(cid, ())) for cid in card_ids}


def card_view(row: Row[Any] | Any, parents: tuple[int, ...]) -> views.CardView:
    return CardBuilder(row._fields).view(tuple(row), parents)


class CardBuilder:
    """Card rows to `CardView`s by column position, the positions looked up once per result
    (a mapping lookup per field made up a third of `GET /api/cards` over 10,000 cards)."""

    def __init__(self, fields: Sequence[str]) -> None:
        at = {name: i for i, name in enumerate(fields)}
        (
            self.id, self.title, self.status, self.profile, self.priority, self.body,
            self.paths, self.max_attempts, self.timeout, self.key, self.review, self.attempts,
            self.not_before, self.reason, self.summary, self.branch, self.created_by,
            self.created_at, self.updated_at, self.ready_at, self.goal_id, self.role,
            self.max_cost_usd, self.model, self.agent_args, self.agent_env,
        ) = (at[name] for name in _CARD_COLUMNS)  # fmt: skip

    def view(self, r: Sequence[Any], parents: tuple[int, ...]) -> views.CardView:
        return views.CardView(
            id=r[self.id],
            title=r[self.title],
            status=r[self.status],
            profile=r[self.profile],
            priority=r[self.priority],
            parents=parents,
            body=r[self.body],
            paths=tuple(r[self.paths] or ()),
            max_attempts=r[self.max_attempts],
            timeout=r[self.timeout],
            key=r[self.key],
            review=bool(r[self.review]),
            attempts=r[self.attempts],
            not_before=r[self.not_before],
            reason=r[self.reason],
            summary=r[self.summary],
            branch=r[self.branch],
            created_by=r[self.created_by],
            created_at=r[self.created_at],
            updated_at=r[self.updated_at],
            ready_at=r[self.ready_at],
            goal_id=r[self.goal_id],
            role=r[self.role],
            max_cost_usd=r[self.max_cost_usd],
            model=r[self.model],
            agent_args=tuple(r[self.agent_args] or ()),
            agent_env=dict(r[self.agent_env] or {}),
        )


_CARD_COLUMNS = (
    "id", "title", "status", "profile", "priority", "body", "paths", "max_attempts",
    "timeout_s", "idem_key", "review", "attempts", "not_before", "reason", "summary", "branch",
    "created_by", "created_at", "updated_at", "ready_at", "goal_id", "role", "max_cost_usd",
    "model", "agent_args", "agent_env",
)  # fmt: skip


def card_views(conn: Connection, rows: Sequence[Row[Any]]) -> list[views.CardView]:
    parents = parents_of(conn, [r.id for r in rows])
    return views_with_parents(rows, parents)


def views_with_parents(
    rows: Sequence[Row[Any]], parents: Mapping[int, Sequence[int]]
) -> list[views.CardView]:
    if not rows:
        return []
    build = CardBuilder(rows[0]._fields)
    at = build.id
    return [build.view(r, tuple(parents.get(r[at], ()))) for r in rows]


def run_view(row: Row[Any] | Any) -> views.RunView:
    m = row._mapping
    return views.RunView(**{f: m[f] for f in views.RunView.__dataclass_fields__})


def card_row(conn: Connection, card_id: int) -> Row[Any]:
    row = conn.execute(sa.select(cards).where(cards.c.id == card_id)).first()
    if row is None:
        raise errors.CardNotFound(card_id)
    return row


def get_card(conn: Connection, card_id: int) -> views.CardView:
    row = card_row(conn, card_id)
    return card_view(row, parents_of(conn, [card_id])[card_id])


def live_run(conn: Connection, card_id: int) -> Row[Any] | None:
    return conn.execute(
        sa.select(runs).where(runs.c.card_id == card_id, runs.c.outcome.is_(None))
    ).first()


def record(
    conn: Connection,
    *,
    kind: str,
    now: dt.datetime,
    card_id: int | None = None,
    run_id: int | None = None,
    actor: str | None = None,
    data: dict[str, Any] | None = None,
    **fields: Any,
) -> None:
    data = {**(data or {}), **fields}
    conn.execute(
        _INSERT_EVENT,
        {
            "card_id": card_id,
            "run_id": run_id,
            "at": now,
            "actor": actor,
            "kind": kind,
            "data": data or None,
        },
    )
    if card_id is not None:
        outbox.capture(conn, kind=kind, now=now, card_id=card_id, run_id=run_id, data=data)


_INSERT_EVENT = sa.insert(events)


def record_many(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(sa.insert(events), rows)


def set_status(
    conn: Connection,
    card_id: int,
    status: CardStatus,
    *,
    now: dt.datetime,
    current: str,
    **values: Any,
) -> None:
    """Write a card's status: the one place a single card's status changes. The move
    `current -> status` must be in the transition table (`states.TRANSITIONS`); the UPDATE
    is conditional on `current`, so a card that moved meanwhile is not overwritten."""
    check_move(card_id, current, status)
    extra: dict[str, Any] = {"updated_at": now, **values}
    if status is CardStatus.READY:
        extra.setdefault("ready_at", now)
    done = conn.execute(
        sa.update(cards)
        .where(cards.c.id == card_id, cards.c.status == str(current))
        .values(status=status.value, **extra)
    ).rowcount
    if done != 1:
        raise errors.InvalidTransition(f"card {card_id} is no longer {current}; nothing changed")


BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_text(value: str, *, what: str, limit: int, one_line: bool = False) -> str:
    """Refuse text that would corrupt the board or a terminal: NUL, invalid UTF-8, control
    characters (escape sequences), and in one-line fields newlines and bidi overrides."""
    if "\x00" in value:
        raise errors.UsageError(f"{what} contains a NUL byte; remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.UsageError(f"{what} is not valid UTF-8 text; fix its encoding") from None
    allowed = "\t" if one_line else "\t\n\r"
    for ch in value:
        if (
            (ch < " " or "\x7f" <= ch <= "\x9f")
            and ch not in allowed
            and not (one_line and ch in "\n\r")
        ):
            raise errors.UsageError(
                f"{what} contains the control character U+{ord(ch):04X}; remove it "
                "(escape sequences would garble terminals that show it)"
            )
        if one_line and ch in BIDI_CONTROLS:
            raise errors.UsageError(
                f"{what} contains the bidirectional override U+{ord(ch):04X}, which can make "
                "text display differently from what it says; remove it"
            )
    if len(value) > limit:
        raise errors.UsageError(
            f"{what} is {len(value):,} characters; the limit is {limit:,} "
            "(put long material in a file in the repository and point to it)"
        )
    if one_line and ("\n" in value or "\r" in value):
        raise errors.UsageError(f"{what} must be one line; put details in the body")
    return value


def comments_of(conn: Connection, card_id: int) -> tuple[views.CommentView, ...]:
    rows = conn.execute(
        sa.select(comments).where(comments.c.card_id == card_id).order_by(comments.c.id)
    )
    return tuple(views.CommentView(**r._mapping) for r in rows)


class Stored(str):
    """A token as the board stores it (its digest): what `token_of` gives the dispatcher to
    end a run it found dead. `digest` passes it through unchanged."""

    __slots__ = ()


def digest(token: str) -> str:
    """What the board stores and compares for a lease token."""
    if isinstance(token, Stored):
        return str(token)
    return hashlib.sha256(token.encode()).hexdigest()
