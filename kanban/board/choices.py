"""Per-card agent choices: the model a card's profile runs it with, and the extra arguments
and variables the profile lets a card add. Checked against the profile by the caller (the
profile is read before the transaction); here only their shape and size."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kanban import errors, views
from kanban.board import _rows
from kanban.models import cards

MAX_MODEL = 200
MAX_ARGS = 32
MAX_ARG = 1000
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def check(
    *, model: str | None, args: Sequence[str], env: Mapping[str, str]
) -> tuple[str | None, list[str], dict[str, str]]:
    """The choices, cleaned; UsageError for a malformed one (before the database sees it)."""
    if model is not None:
        model = _rows.check_text(model.strip(), what="model", limit=MAX_MODEL, one_line=True)
        if not model:
            raise errors.UsageError("a model name cannot be empty (leave --model out instead)")
    if len(args) > MAX_ARGS:
        raise errors.UsageError(f"at most {MAX_ARGS} extra arguments per card")
    clean_args = [_rows.check_text(a, what="argument", limit=MAX_ARG, one_line=True) for a in args]
    if any(not a.startswith("-") for a in clean_args):
        raise errors.UsageError(
            "an extra argument is an option of the agent's, like --arg --effort=high"
        )
    clean_env: dict[str, str] = {}
    for key, value in env.items():
        if not _ENV_NAME.fullmatch(key) or key.startswith("KANBAN_"):
            raise errors.UsageError(
                f"{key!r} is not a variable a card may set (letters, digits, _; not KANBAN_*)"
            )
        clean_env[key] = _rows.check_text(value, what=f"{key}", limit=MAX_ARG, one_line=True)
    return model, clean_args, clean_env


def set_agent_choices(
    conn: Connection,
    *,
    card_id: int,
    model: str | None,
    args: Sequence[str],
    env: Mapping[str, str],
    now: dt.datetime,
    actor: str | None = None,
) -> views.CardView:
    """Set what the card's next attempt runs with (a running attempt keeps its own)."""
    model, clean_args, clean_env = check(model=model, args=args, env=env)
    _rows.card_row(conn, card_id)
    conn.execute(
        sa.update(cards)
        .where(cards.c.id == card_id)
        .values(
            model=model,
            agent_args=clean_args or None,
            agent_env=clean_env or None,
            updated_at=now,
        )
    )
    _rows.record(
        conn,
        kind="agent_choices",
        card_id=card_id,
        now=now,
        actor=actor,
        model=model,
        args=clean_args,
        env=sorted(clean_env),  # names only: values may be settings a person keeps private
    )
    return _rows.get_card(conn, card_id)
