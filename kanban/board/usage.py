"""Verbs on money: what runs used (tokens, cost), cost caps on cards, and spend totals.

Usage is a fact about money already spent, so `record_usage` is fenced by the run's token
but not by the run being live: an agent that reported `kanban complete` has ended its run
before its process prints the final usage line, and that line must still be kept.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kanban import errors, views
from kanban.board import _rows
from kanban.models import cards, runs

MAX_COST_USD = 1_000_000.0


def check_cost(value: float | None, *, what: str = "cost cap") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not 0 < value <= MAX_COST_USD or value != value:
        raise errors.UsageError(
            f"{what} {value!r} is out of range: give USD above 0 (at most {MAX_COST_USD:,.0f})"
        )
    return float(value)


def record_usage(
    conn: Connection,
    *,
    card_id: int,
    token: str,
    tokens_in: int | None,
    tokens_out: int | None,
    cost_usd: float | None,
    session_id: str | None = None,
) -> views.RunView:
    """Store what the run holding `token` used (and the agent's session id), live or ended.
    Unknown values stay NULL."""
    values: dict[str, Any] = {}
    if session_id is not None:
        values["session_id"] = session_id[:255]
    if tokens_in is not None:
        values["tokens_in"] = max(0, int(tokens_in))
    if tokens_out is not None:
        values["tokens_out"] = max(0, int(tokens_out))
    if cost_usd is not None:
        values["cost_usd"] = max(0.0, float(cost_usd))
    mine = (runs.c.card_id == card_id, runs.c.token == token)
    if values:
        row = conn.execute(sa.update(runs).where(*mine).values(**values).returning(*runs.c)).first()
    else:
        row = conn.execute(sa.select(runs).where(*mine)).first()
    if row is None:
        _rows.card_row(conn, card_id)
        raise errors.LeaseLost(f"no run of card {card_id} holds that token; usage not recorded")
    return _rows.run_view(row)


def set_cost_cap(
    conn: Connection,
    *,
    card_id: int,
    max_cost_usd: float | None,
    now: dt.datetime,
    actor: str | None = None,
) -> views.CardView:
    """Set (or, with None, remove) the cap on what all of a card's runs may cost together."""
    cap = check_cost(max_cost_usd)
    row = _rows.card_row(conn, card_id)
    conn.execute(
        sa.update(cards).where(cards.c.id == card_id).values(max_cost_usd=cap, updated_at=now)
    )
    _rows.record(
        conn,
        kind="cost_cap",
        card_id=card_id,
        actor=actor,
        now=now,
        before=row.max_cost_usd,
        after=cap,
    )
    return _rows.get_card(conn, card_id)


def spend(
    conn: Connection,
    *,
    card_ids: list[int] | None = None,
    where: sa.ColumnElement[bool] | None = None,
    since: dt.datetime | None = None,
    exclude_run: int | None = None,
) -> views.Spend:
    """What a set of runs used: of `card_ids`, of the cards matching `where` (a condition on
    `kanban.models.cards`), ended since `since`; all runs when nothing narrows it."""
    query = sa.select(
        sa.func.count(runs.c.id),
        sa.func.count(runs.c.cost_usd),
        sa.func.coalesce(sa.func.sum(runs.c.tokens_in), 0),
        sa.func.coalesce(sa.func.sum(runs.c.tokens_out), 0),
        sa.func.coalesce(sa.func.sum(runs.c.cost_usd), 0.0),
    ).select_from(runs)
    if where is not None:
        query = query.join(cards, cards.c.id == runs.c.card_id).where(where)
    if card_ids is not None:
        query = query.where(runs.c.card_id.in_(card_ids))
    if since is not None:
        query = query.where(runs.c.ended_at >= since)
    if exclude_run is not None:
        query = query.where(runs.c.id != exclude_run)
    count, reported, tokens_in, tokens_out, cost = conn.execute(query).one()
    return views.Spend(
        runs=int(count),
        reported=int(reported),
        tokens_in=int(tokens_in),
        tokens_out=int(tokens_out),
        cost_usd=float(cost),
    )


def goal_spend(conn: Connection, goal_id: int, *, exclude_run: int | None = None) -> views.Spend:
    """What all the cards of one goal (planners and judges too) have used: what its budget
    (`goals.max_cost_usd`) is compared with."""
    return spend(conn, where=cards.c.goal_id == goal_id, exclude_run=exclude_run)
