"""Verbs for what an agent tells the board through its supervisor besides ending its run:
structured metadata with its result, and heartbeat notes. Both are fenced by the run's token
(a finished run adds nothing) and kept as events on the card."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.engine import Connection

from kanban.board import _rows
from kanban.board.runs import heartbeat


def record(
    conn: Connection,
    *,
    card_id: int,
    token: str,
    kind: str,
    now: dt.datetime,
    ttl: float,
    actor: str,
    data: dict[str, Any],
) -> None:
    """Renew the run's lease (LeaseLost when it has ended) and keep `data` as a `kind` event."""
    run = heartbeat(conn, card_id=card_id, token=token, ttl=ttl, now=now)
    _rows.record(conn, kind=kind, card_id=card_id, run_id=run.id, actor=actor, now=now, data=data)
