"""Verbs on cards: add, link, unlink, promote, comment, and the moves a person makes.

Each takes an open connection inside the caller's transaction and never commits.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kanban import errors, views
from kanban.board import _rows, usage
from kanban.models import cards, comments, dependencies, runs
from kanban.states import FINISHED, CardRole, CardStatus, RunOutcome, check_move, table_move

S = CardStatus
PROMOTE = table_move(S.TODO, S.READY)  # the one move `promote` makes


def add_card(
    conn: Connection,
    *,
    title: str,
    now: dt.datetime,
    body: str = "",
    profile: str | None = None,
    parents: Sequence[int] = (),
    priority: int = 0,
    paths: Sequence[str] | None = None,
    max_attempts: int | None = None,
    timeout: float | None = None,
    key: str | None = None,
    review: bool = False,
    triage: bool = False,
    actor: str | None = None,
    goal_id: int | None = None,
    role: CardRole | None = None,
    max_cost_usd: float | None = None,
) -> tuple[views.CardView, bool]:
    """Add a card; returns (card, created). A known `key` returns the existing card unchanged.

    `goal_id` and `role` are set by the goal verbs (board.goals) for the cards of a goal."""
    checked = check_fields(
        title=title,
        body=body,
        profile=profile,
        priority=priority,
        max_attempts=max_attempts,
        timeout=timeout,
        paths=paths,
        max_cost_usd=max_cost_usd,
    )
    title, body, profile = checked["title"], checked["body"], checked["profile"]
    clean_paths, max_cost_usd = checked["paths"], checked["max_cost_usd"]
    if key is not None:
        key = _rows.check_text(key.strip(), what="key", limit=255, one_line=True)
        if not key:
            raise errors.UsageError("an idempotency key cannot be empty")
        existing = conn.execute(sa.select(cards.c.id).where(cards.c.idem_key == key)).scalar()
        if existing is not None:
            return _rows.get_card(conn, existing), False
    parent_ids = sorted(set(parents))
    if parent_ids:
        _rows.lock_cards(conn, parent_ids, share=True)  # a parent finishing waits for us
        found = dict(
            conn.execute(
                sa.select(cards.c.id, cards.c.status).where(cards.c.id.in_(parent_ids))
            ).all()
        )
        missing = [p for p in parent_ids if p not in found]
        if missing:
            raise errors.CardNotFound(missing[0])
        waiting = any(status not in _rows.SATISFIED for status in found.values())
    else:
        waiting = False
    status = S.TRIAGE if triage else (S.TODO if waiting else S.READY)
    row = conn.execute(
        _insert_card(conn.dialect.name == "postgresql", keyed=key is not None),
        {
            "title": title,
            "body": body,
            "status": status.value,
            "profile": profile,
            "priority": priority,
            "paths": clean_paths,
            "max_attempts": max_attempts,
            "timeout_s": timeout,
            "idem_key": key,
            "review": review,
            "max_cost_usd": max_cost_usd,
            "attempts": 0,
            "created_by": actor,
            "created_at": now,
            "updated_at": now,
            "ready_at": now if status is S.READY else None,
            "goal_id": goal_id,
            "role": role.value if role is not None else None,
        },
    ).first()
    if row is None:  # another writer added this key since we looked (PostgreSQL)
        existing = conn.execute(sa.select(cards.c.id).where(cards.c.idem_key == key)).scalar_one()
        return _rows.get_card(conn, existing), False
    card_id = row.id
    if parent_ids:
        conn.execute(
            sa.insert(dependencies), [{"parent_id": p, "child_id": card_id} for p in parent_ids]
        )
    _rows.record(
        conn,
        kind="created",
        card_id=card_id,
        actor=actor,
        now=now,
        status=status.value,
        parents=parent_ids,
    )
    return _rows.card_view(row, tuple(parent_ids)), True


@functools.cache
def _insert_card(postgres: bool, *, keyed: bool) -> sa.Insert:
    """INSERT INTO cards; with a key, one that yields no row when the key exists already.

    SQLite's write lock makes look-then-insert safe; on PostgreSQL two adds with one key can
    both look first, and the unique index then makes the second wait for the first and insert
    nothing (instead of failing), so that it returns the first card.
    """
    # Built once per kind and run with a dict of values: building `.values(...)` on every
    # add cost more than the INSERT itself. It returns the whole row: the card comes back
    # without reading it again.
    if not keyed:
        return sa.insert(cards).returning(*cards.c)
    if postgres:
        from sqlalchemy.dialects import postgresql

        return (
            postgresql.insert(cards)
            .on_conflict_do_nothing(index_elements=["idem_key"])
            .returning(*cards.c)
        )
    from sqlalchemy.dialects import sqlite

    return (
        sqlite.insert(cards).on_conflict_do_nothing(index_elements=["idem_key"]).returning(*cards.c)
    )


_UNSET: Any = object()


def check_fields(
    *,
    title: str | None = _UNSET,
    body: str | None = _UNSET,
    profile: str | None = _UNSET,
    priority: int = _UNSET,
    max_attempts: int | None = _UNSET,
    timeout: float | None = _UNSET,
    paths: Sequence[str] | None = _UNSET,
    max_cost_usd: float | None = _UNSET,
) -> dict[str, Any]:
    """The card fields given (others left out), checked and cleaned; `add_card` and
    `board.edits.edit_card` share it, so a field means the same thing in both."""
    given: dict[str, Any] = {
        k: v
        for k, v in {
            "title": title,
            "body": body,
            "profile": profile,
            "priority": priority,
            "max_attempts": max_attempts,
            "timeout": timeout,
            "paths": paths,
            "max_cost_usd": max_cost_usd,
        }.items()
        if v is not _UNSET
    }
    out: dict[str, Any] = dict(given)
    if "title" in given:
        out["title"] = _rows.check_text(
            (given["title"] or "").strip(), what="title", limit=_rows.MAX_TITLE, one_line=True
        )
        if not out["title"]:
            raise errors.UsageError("a card needs a title: kanban add 'what to do'")
    if "body" in given:
        out["body"] = _rows.check_text(given["body"] or "", what="body", limit=_rows.MAX_BODY)
    if given.get("profile") is not None:
        out["profile"] = check_profile_name(given["profile"])
    if "priority" in given and not -_rows.MAX_PRIORITY <= priority <= _rows.MAX_PRIORITY:
        raise errors.UsageError(f"priority {priority} is out of range (±{_rows.MAX_PRIORITY:,})")
    if max_attempts not in (None, _UNSET) and not 1 <= max_attempts <= 100:
        raise errors.UsageError(f"max attempts {max_attempts} is out of range (1 to 100)")
    if timeout not in (None, _UNSET) and not 0 < timeout <= 30 * 86400:
        raise errors.UsageError(
            f"timeout {timeout}s is out of range (more than 0, at most 30 days)"
        )
    if "paths" in given:
        out["paths"] = _check_paths(given["paths"])
    if "max_cost_usd" in given:
        out["max_cost_usd"] = usage.check_cost(given["max_cost_usd"])
    return out


def check_profile_name(name: str) -> str:
    """Profile names become file names: letters, digits, dot, dash, underscore only."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name) or ".." in name:
        raise errors.UsageError(
            f"profile name {name!r} is not valid: use letters, digits, '.', '-', '_' "
            "(see `kanban profiles ls`)"
        )
    return name


def _check_paths(paths: Sequence[str] | None) -> list[str] | None:
    if not paths:
        return None
    cleaned = []
    for raw in paths:
        path = _rows.check_text(raw.strip(), what="path", limit=1000, one_line=True)
        if not path:
            raise errors.UsageError("an empty path glob; give paths like 'src/api/**'")
        if path.startswith("/") or ".." in path.split("/"):
            raise errors.UsageError(
                f"path {path!r} must be relative to the repository and stay inside it"
            )
        cleaned.append(path)
    return sorted(set(cleaned))


# ------------------------------------------------------------------------------ dependencies


def link(
    conn: Connection, *, parent: int, child: int, now: dt.datetime, actor: str | None = None
) -> bool:
    """Make `child` wait for `parent`. Refuses a cycle, naming it. Returns False if it existed."""
    _rows.lock_graph(conn)
    _rows.lock_cards(conn, [parent], share=True)
    _rows.lock_cards(conn, [child])
    rows = dict(
        conn.execute(
            sa.select(cards.c.id, cards.c.status).where(cards.c.id.in_([parent, child]))
        ).all()
    )
    for card_id in (parent, child):
        if card_id not in rows:
            raise errors.CardNotFound(card_id)
    if parent == child:
        raise errors.CycleError([parent, parent])
    if rows[parent] == S.ARCHIVED:
        raise errors.InvalidTransition(f"card {parent} is archived; it cannot become a parent")
    exists = conn.execute(
        sa.select(sa.literal(1)).where(
            dependencies.c.parent_id == parent, dependencies.c.child_id == child
        )
    ).first()
    if exists:
        return False
    path = _path_between(conn, start=child, goal=parent)
    if path is not None:
        raise errors.CycleError([parent, *path])
    conn.execute(sa.insert(dependencies).values(parent_id=parent, child_id=child))
    _rows.record(conn, kind="linked", card_id=child, actor=actor, now=now, parent=parent)
    if rows[child] == S.READY and rows[parent] not in _rows.SATISFIED:
        _rows.set_status(conn, child, S.TODO, now=now, current=rows[child], ready_at=None)
        _rows.record(
            conn,
            kind="status",
            card_id=child,
            now=now,
            actor=actor,
            data={"from": "ready", "to": "todo", "because": f"new parent {parent}"},
        )
    return True


def _path_between(conn: Connection, *, start: int, goal: int) -> list[int] | None:
    """A path start -> ... -> goal following parent->child edges, or None (breadth first)."""
    came_from: dict[int, int | None] = {start: None}
    frontier = [start]
    while frontier:
        next_frontier: list[int] = []
        for part in _rows.chunks(frontier):
            for p, c in conn.execute(
                sa.select(dependencies.c.parent_id, dependencies.c.child_id).where(
                    dependencies.c.parent_id.in_(part)
                )
            ):
                if c in came_from:
                    continue
                came_from[c] = p
                if c == goal:
                    path = [c]
                    node: int | None = p
                    while node is not None:
                        path.append(node)
                        node = came_from[node]
                    return path[::-1]
                next_frontier.append(c)
        frontier = next_frontier
    return None


def unlink(
    conn: Connection, *, parent: int, child: int, now: dt.datetime, actor: str | None = None
) -> None:
    for card_id in (parent, child):
        _rows.card_row(conn, card_id)
    _rows.lock_graph(conn)
    deleted = conn.execute(
        sa.delete(dependencies).where(
            dependencies.c.parent_id == parent, dependencies.c.child_id == child
        )
    ).rowcount
    if not deleted:
        raise errors.UsageError(f"card {child} does not depend on card {parent}; nothing to unlink")
    _rows.record(conn, kind="unlinked", card_id=child, actor=actor, now=now, parent=parent)
    promote(conn, now=now, card_ids=[child])


def promote(
    conn: Connection,
    *,
    now: dt.datetime,
    card_ids: Sequence[int] | None = None,
    parent_ids: Sequence[int] | None = None,
) -> list[int]:
    """todo -> ready for every card whose parents are all done, in one statement.

    Limit to `card_ids`, or to the children of `parent_ids`; neither means the whole board.
    """
    if card_ids is not None:
        _rows.lock_cards(conn, card_ids)
    if parent_ids is not None:
        _rows.lock_children(conn, parent_ids)
    stmt = (
        sa.update(cards)
        .where(cards.c.status == PROMOTE[0].value, ~_rows.unfinished_parent(cards.c.id))
        .values(status=PROMOTE[1].value, ready_at=now, updated_at=now)
        .returning(cards.c.id)
    )
    if card_ids is not None:
        stmt = stmt.where(cards.c.id.in_(list(card_ids)))
    if parent_ids is not None:
        stmt = stmt.where(
            cards.c.id.in_(
                sa.select(dependencies.c.child_id).where(
                    dependencies.c.parent_id.in_(list(parent_ids))
                )
            )
        )
    promoted = sorted(conn.execute(stmt).scalars())
    _rows.record_many(
        conn,
        [
            {
                "card_id": c,
                "run_id": None,
                "at": now,
                "actor": None,
                "kind": "promoted",
                "data": None,
            }
            for c in promoted
        ],
    )
    return promoted


# ------------------------------------------------------------------------------- comments


def comment(
    conn: Connection, *, card_id: int, body: str, now: dt.datetime, author: str | None = None
) -> views.CommentView:
    _rows.card_row(conn, card_id)
    body = _rows.check_text(body.strip(), what="comment", limit=_rows.MAX_BODY)
    if not body:
        raise errors.UsageError("an empty comment; say something")
    comment_id = conn.execute(
        sa.insert(comments)
        .values(card_id=card_id, at=now, author=author, body=body)
        .returning(comments.c.id)
    ).scalar_one()
    _rows.record(conn, kind="commented", card_id=card_id, actor=author, now=now, comment=comment_id)
    return views.CommentView(id=comment_id, card_id=card_id, at=now, author=author, body=body)


# --------------------------------------------------------------------------- manual moves


def move(
    conn: Connection,
    *,
    card_id: int,
    to: CardStatus,
    now: dt.datetime,
    actor: str | None = None,
    reason: str | None = None,
    summary: str | None = None,
    reset_attempts: bool = False,
) -> views.CardView:
    """A person moves a card. A live run is closed as `cancelled` (its agent loses the lease).

    Moving to READY lands on TODO instead while a parent is unfinished.
    """
    row = _rows.card_row(conn, card_id)
    if row.status == S.ARCHIVED:  # the table's moves out of it belong to `unarchive` alone
        raise errors.InvalidTransition(
            f"card {card_id} is archived; `kanban unarchive {card_id}` brings it back first"
        )
    target = to
    if to is S.READY and _has_unfinished_parent(conn, card_id):
        target = S.TODO
    check_move(card_id, row.status, to)
    if to is S.ARCHIVED and row.status != S.DONE:
        _refuse_if_open_children(conn, card_id)
    values: dict[str, object] = {}
    if reason is not None or to in (S.READY, S.TODO, S.DONE):
        values["reason"] = reason
    if summary is not None:
        values["summary"] = summary
    if reset_attempts:
        values.update(attempts=0, not_before=None)
    if target is not S.READY:
        values["ready_at"] = None
    live = _rows.live_run(conn, card_id)
    if live is not None:
        conn.execute(
            sa.update(runs)
            .where(runs.c.id == live.id, runs.c.outcome.is_(None))
            .values(
                outcome=RunOutcome.CANCELLED.value,
                ended_at=now,
                error=f"card moved to {target} by {actor or 'a person'}",
            )
        )
    _rows.set_status(conn, card_id, target, now=now, current=row.status, **values)
    _rows.record(
        conn,
        kind=to.value if to is not S.READY else "requeued",
        card_id=card_id,
        run_id=live.id if live is not None else None,
        actor=actor,
        now=now,
        data={"from": row.status, "to": target.value, "reason": reason},
    )
    if target is S.DONE:
        promote(conn, now=now, parent_ids=[card_id])
    return _rows.get_card(conn, card_id)


def _has_unfinished_parent(conn: Connection, card_id: int) -> bool:
    _rows.lock_parents(conn, card_id)
    return bool(conn.execute(sa.select(_rows.unfinished_parent(card_id))).scalar())


def _refuse_if_open_children(conn: Connection, card_id: int) -> None:
    open_children = (
        conn.execute(
            sa.select(cards.c.id)
            .join(dependencies, dependencies.c.child_id == cards.c.id)
            .where(dependencies.c.parent_id == card_id)
            .where(cards.c.status.not_in([s.value for s in FINISHED]))
            .order_by(cards.c.id)
        )
        .scalars()
        .all()
    )
    if open_children:
        listed = ", ".join(str(c) for c in open_children[:10])
        raise errors.InvalidTransition(
            f"card {card_id} is not done and cards {listed} wait for it; "
            "cancel or unlink them before archiving it"
        )
