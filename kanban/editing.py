"""Fixing cards after the fact: `kanban edit`, `kanban unarchive`, and the profile check
that `add` and `edit` share with `goal add` and `cron add` (`profiles.require`).

Each function is one write transaction through a board verb (`board.edits`), and wakes a
local dispatcher after commit, since an edit can make a card claimable.
"""

from __future__ import annotations

from typing import Any

from kanban import api, board, clock, profiles, views


def check_profile(b: api.Board, name: str | None) -> None:
    """Refuse a profile no agent could run here: unknown (with the known list) or broken."""
    if name is not None:
        board.check_profile_name(name)
        profiles.require(name, repo=b.settings.repo)


def add(b: api.Board, title: str, **fields: Any) -> views.CardView:
    """`Board.add`, after checking the profile."""
    check_profile(b, fields.get("profile"))
    return b.add(title, **fields)


def edit(
    b: api.Board, card_id: int, **changes: Any
) -> tuple[views.CardView, dict[str, dict[str, Any]]]:
    """Change the given fields (see `board.edits.COLUMNS`); returns the card and what changed.
    `timeout` takes a duration (`30m`)."""
    check_profile(b, changes.get("profile"))
    if changes.get("timeout") is not None:
        changes["timeout"] = clock.parse_duration(changes["timeout"], what="timeout")
    return b.tx.write(
        lambda c: board.edits.edit_card(
            c, card_id=card_id, changes=dict(changes), now=clock.now(), actor=b.actor
        ),
        wake_dispatcher=True,
    )


def unarchive(b: api.Board, card_id: int) -> views.CardView:
    return b.tx.write(
        lambda c: board.edits.unarchive(c, card_id=card_id, now=clock.now(), actor=b.actor),
        wake_dispatcher=True,
    )


def describe(diff: dict[str, dict[str, Any]]) -> str:
    """`title 'a' -> 'b', priority 0 -> 5` (long text shortened)."""

    def short(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."

    return ", ".join(f"{f} {short(d['from'])} -> {short(d['to'])}" for f, d in diff.items())
