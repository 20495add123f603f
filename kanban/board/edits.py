"""Verbs that change a card in place: edit its fields, unarchive it, skip its backoff.

Each takes an open connection inside the caller's transaction and never commits; each
change is one event naming what changed (`edited`, `unarchived`, `backoff_skipped`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kanban import errors, views
from kanban.board import _rows
from kanban.board.cards import check_fields
from kanban.models import cards, events
from kanban.states import CardStatus, check_move

S = CardStatus

# Card field -> column. The CLI's option names are the keys with dashes.
COLUMNS = {
    "title": "title",
    "body": "body",
    "priority": "priority",
    "profile": "profile",
    "paths": "paths",
    "max_attempts": "max_attempts",
    "timeout": "timeout_s",
    "max_cost_usd": "max_cost_usd",
    "review": "review",
}
# What a running agent (or its supervisor) has already been given: changing it now would
# make the board say one thing while the agent works from another.
FIXED_WHILE_RUNNING = ("title", "body", "profile", "paths", "timeout")
# Safe on a running card: the claim order, the next attempt's budget, the cost cap the
# supervisor re-reads, and where the card goes when the agent finishes.
LIVE_EDITS = ("priority", "max_attempts", "max_cost_usd", "review")
OPTION = {"max_cost_usd": "--max-cost", "paths": "--path", "review": "--review/--no-review"}


def option(field: str) -> str:
    return OPTION.get(field, "--" + field.replace("_", "-"))


def edit_card(
    conn: Connection,
    *,
    card_id: int,
    changes: dict[str, Any],
    now: dt.datetime,
    actor: str | None = None,
) -> tuple[views.CardView, dict[str, dict[str, Any]]]:
    """Change the given fields of a card; returns (card, {field: {"from", "to"}}) for the
    fields whose value really changed (nothing changed: no event)."""
    unknown = set(changes) - set(COLUMNS)
    if unknown:
        raise errors.UsageError(f"cannot edit {', '.join(sorted(unknown))}")
    if not changes:
        listed = ", ".join(option(f) for f in COLUMNS)
        raise errors.UsageError(f"nothing to change: give one of {listed}")
    review = changes.pop("review", None)
    checked = check_fields(**changes)
    if review is not None:
        checked["review"] = bool(review)
    _rows.lock_cards(conn, [card_id])
    row = _rows.card_row(conn, card_id)
    if row.status == S.ARCHIVED:
        raise errors.InvalidTransition(
            f"card {card_id} is archived; `kanban unarchive {card_id}` brings it back first"
        )
    current = {f: row._mapping[c] for f, c in COLUMNS.items()}
    current["paths"] = sorted(current["paths"]) if current["paths"] else None
    current["review"] = bool(current["review"])
    diff = {f: {"from": current[f], "to": v} for f, v in checked.items() if current[f] != v}
    if row.status == S.RUNNING:
        fixed = [f for f in diff if f in FIXED_WHILE_RUNNING]
        if fixed:
            raise errors.InvalidTransition(
                f"card {card_id} is running: {', '.join(option(f) for f in fixed)} would "
                "change what its agent was already given; change them when the run ends, or "
                f"`kanban cancel {card_id}` first. On a running card these apply: --priority, "
                "--max-attempts (from the next attempt), --max-cost, --review/--no-review"
            )
    if diff:
        conn.execute(
            sa.update(cards)
            .where(cards.c.id == card_id)
            .values(updated_at=now, **{COLUMNS[f]: d["to"] for f, d in diff.items()})
        )
        _rows.record(conn, kind="edited", card_id=card_id, actor=actor, now=now, changed=diff)
    return _rows.get_card(conn, card_id), diff


def unarchive(
    conn: Connection, *, card_id: int, now: dt.datetime, actor: str | None = None
) -> views.CardView:
    """Bring an archived card back to the state it was archived from (a card archived while
    waiting comes back `ready`, or `todo` while a parent is unfinished)."""
    _rows.lock_cards(conn, [card_id])
    row = _rows.card_row(conn, card_id)
    if row.status != S.ARCHIVED:
        raise errors.InvalidTransition(f"card {card_id} is {row.status}, not archived")
    data = conn.execute(
        sa.select(events.c.data)
        .where(events.c.card_id == card_id, events.c.kind == S.ARCHIVED.value)
        .order_by(events.c.id.desc())
        .limit(1)
    ).scalar()
    before = (data or {}).get("from") or S.DONE.value
    target = S(before) if before in {s.value for s in S} else S.DONE
    if target in (S.READY, S.TODO, S.RUNNING):
        _rows.lock_parents(conn, card_id)
        waiting = conn.execute(sa.select(_rows.unfinished_parent(card_id))).scalar()
        target = S.TODO if waiting else S.READY
    check_move(card_id, row.status, target)
    _rows.set_status(
        conn,
        card_id,
        target,
        now=now,
        current=row.status,
        **({} if target is S.READY else {"ready_at": None}),
    )
    _rows.record(
        conn,
        kind="unarchived",
        card_id=card_id,
        actor=actor,
        now=now,
        data={"from": S.ARCHIVED.value, "to": target.value},
    )
    return _rows.get_card(conn, card_id)


def skip_backoff(
    conn: Connection, *, card_id: int, now: dt.datetime, actor: str | None = None
) -> views.CardView:
    """A ready card backing off after a failed attempt may be claimed at once (its spent
    attempts stay spent)."""
    _rows.lock_cards(conn, [card_id])
    row = _rows.card_row(conn, card_id)
    if row.status != S.READY:
        raise errors.InvalidTransition(
            f"card {card_id} is {row.status}; `--now` skips the backoff of a ready card "
            "(or use it with a failed, blocked, cancelled, review or triage card)"
        )
    if row.not_before is None or row.not_before <= now:
        return _rows.get_card(conn, card_id)
    conn.execute(
        sa.update(cards).where(cards.c.id == card_id).values(not_before=None, updated_at=now)
    )
    _rows.record(
        conn,
        kind="backoff_skipped",
        card_id=card_id,
        actor=actor,
        now=now,
        until=row.not_before.isoformat(),
    )
    return _rows.get_card(conn, card_id)
