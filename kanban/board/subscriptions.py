"""Subscriptions: who is told which events (a webhook URL or a command), and their scope."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kanban import errors
from kanban.models import cards, deliveries, goals, subscriptions

# What a subscription can listen to (`--on`), and what each means.
KINDS: dict[str, str] = {
    "blocked": "a card is blocked: its agent asked a question, or a person blocked it",
    "failed": "a card gave up: its attempts are spent (or a person marked it failed)",
    "review": "a card's agent finished and the card waits for a person's review",
    "done": "a card is done",
    "approval": "a goal's plan waits for `kanban goal approve`",
    "goal_done": "a goal is done",
    "goal_blocked": "a goal is blocked: its turns or budget are spent",
    "crashed": "a run crashed, timed out, stalled or was reclaimed (its lease expired)",
    "silent": "a dispatcher stopped heartbeating without saying it stopped",
    "cost_cap": "a card's cost cap or a goal's budget was reached",
}
FORMATS = ("json", "slack", "discord", "ntfy")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclasses.dataclass(frozen=True, slots=True)
class SubscriptionView:
    id: int
    name: str
    url: str | None
    command: tuple[str, ...] | None
    format: str
    kinds: tuple[str, ...] | None  # None: every kind
    secret_env: str | None
    card_id: int | None
    goal_id: int | None
    profile: str | None
    created_at: dt.datetime
    pending: int = 0
    sent: int = 0
    dead: int = 0
    last_error: str | None = None


# --------------------------------------------------------------------------- subscriptions


def parse_kinds(text: str | None) -> tuple[str, ...] | None:
    """`blocked,done` -> ("blocked", "done"); None or "all" -> every kind."""
    if text is None or text.strip() in ("", "all", "*"):
        return None
    wanted = tuple(dict.fromkeys(k.strip().replace("-", "_") for k in text.split(",") if k))
    unknown = [k for k in wanted if k not in KINDS]
    if unknown:
        raise errors.UsageError(
            f"unknown event kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)} (or all)"
        )
    return wanted


def add_subscription(
    conn: Connection,
    *,
    name: str,
    now: dt.datetime,
    url: str | None = None,
    command: Sequence[str] | None = None,
    format: str = "json",
    kinds: Sequence[str] | None = None,
    secret_env: str | None = None,
    card_id: int | None = None,
    goal_id: int | None = None,
    profile: str | None = None,
    actor: str | None = None,
) -> SubscriptionView:
    if not NAME.match(name):
        raise errors.UsageError(
            f"subscription name {name!r}: use letters, digits, '.', '_' or '-' (up to 64)"
        )
    if (url is None) == (command is None):
        raise errors.UsageError("give --webhook URL or --command ARGV (exactly one)")
    if format not in FORMATS:
        raise errors.UsageError(f"unknown format {format!r}; known: {', '.join(FORMATS)}")
    if conn.execute(sa.select(subscriptions.c.id).where(subscriptions.c.name == name)).first():
        raise errors.UsageError(f"a subscription named {name!r} exists; pick another --name")
    if (
        card_id is not None
        and not conn.execute(sa.select(cards.c.id).where(cards.c.id == card_id)).first()
    ):
        raise errors.CardNotFound(card_id)
    if (
        goal_id is not None
        and not conn.execute(sa.select(goals.c.id).where(goals.c.id == goal_id)).first()
    ):
        raise errors.UsageError(f"no goal {goal_id}; see `kanban goal ls`")
    conn.execute(
        sa.insert(subscriptions).values(
            name=name,
            url=url,
            command=list(command) if command is not None else sa.null(),
            format=format,
            kinds=f",{','.join(kinds)}," if kinds else None,
            secret_env=secret_env,
            card_id=card_id,
            goal_id=goal_id,
            profile=profile,
            created_by=actor,
            created_at=now,
        )
    )
    return get_subscription(conn, name=name)


def subscription_view(row: Any, **counts: Any) -> SubscriptionView:
    m = row._mapping
    return SubscriptionView(
        id=m["id"],
        name=m["name"],
        url=m["url"],
        command=tuple(m["command"]) if m["command"] is not None else None,
        format=m["format"],
        kinds=tuple(k for k in m["kinds"].split(",") if k) if m["kinds"] else None,
        secret_env=m["secret_env"],
        card_id=m["card_id"],
        goal_id=m["goal_id"],
        profile=m["profile"],
        created_at=m["created_at"],
        **counts,
    )


def get_subscription(conn: Connection, *, name: str) -> SubscriptionView:
    row = conn.execute(sa.select(subscriptions).where(subscriptions.c.name == name)).first()
    if row is None:
        raise errors.UsageError(f"no subscription named {name!r}; see `kanban notify ls`")
    return subscription_view(row)


def list_subscriptions(conn: Connection) -> list[SubscriptionView]:
    counts: dict[int, dict[str, int]] = {}
    for sub_id, state, n in conn.execute(
        sa.select(deliveries.c.subscription_id, deliveries.c.state, sa.func.count()).group_by(
            deliveries.c.subscription_id, deliveries.c.state
        )
    ):
        counts.setdefault(sub_id, {})[state] = n
    last_errors: dict[int, str] = {
        row[0]: row[1]
        for row in conn.execute(
            sa.select(deliveries.c.subscription_id, deliveries.c.error).where(
                deliveries.c.id.in_(
                    sa.select(sa.func.max(deliveries.c.id))
                    .where(deliveries.c.error.is_not(None), deliveries.c.state != "sent")
                    .group_by(deliveries.c.subscription_id)
                )
            )
        )
    }
    rows = conn.execute(sa.select(subscriptions).order_by(subscriptions.c.name))
    return [
        subscription_view(r, **counts.get(r.id, {}), last_error=last_errors.get(r.id)) for r in rows
    ]


def remove_subscription(conn: Connection, *, name: str) -> SubscriptionView:
    found = get_subscription(conn, name=name)
    conn.execute(sa.delete(deliveries).where(deliveries.c.subscription_id == found.id))
    conn.execute(sa.delete(subscriptions).where(subscriptions.c.id == found.id))
    return found
