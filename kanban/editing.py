"""Fixing cards after the fact: `kanban edit`, `kanban unarchive`, and the profile check
that `add` and `edit` share with `goal add` and `cron add` (`profiles.require`).

Each function is one write transaction through a board verb (`board.edits`), and wakes a
local dispatcher after commit, since an edit can make a card claimable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def choices(
    *, model: str | None, args: Sequence[str], env: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """What `edit` was asked to change of a card's agent choices ("" model: back to none)."""
    given: dict[str, Any] = {}
    if model is not None:
        given["model"] = model or None
    if args:
        given["args"] = tuple(args)
    if env:
        given["env"] = dict(env)
    return given


def edit(
    b: api.Board, card_id: int, *, choices: Mapping[str, Any] | None = None, **changes: Any
) -> tuple[views.CardView, dict[str, dict[str, Any]]]:
    """Change the given fields (see `board.edits.COLUMNS`) and agent `choices` (model, args,
    env: checked against the card's profile, the new one if it changes); returns the card and
    what changed. `timeout` takes a duration (`30m`)."""
    check_profile(b, changes.get("profile"))
    if changes.get("timeout") is not None:
        changes["timeout"] = clock.parse_duration(changes["timeout"], what="timeout")
    if not choices:
        return b.tx.write(
            lambda c: board.edits.edit_card(
                c, card_id=card_id, changes=dict(changes), now=clock.now(), actor=b.actor
            ),
            wake_dispatcher=True,
        )
    card = b.get(card_id)
    model = choices.get("model", card.model)
    args = choices.get("args", card.agent_args)
    env = choices.get("env", card.agent_env)
    b.check_agent_choices(changes.get("profile", card.profile), model, args, env)

    def apply(c: Any) -> tuple[views.CardView, dict[str, dict[str, Any]]]:
        diff: dict[str, dict[str, Any]] = {}
        if changes:
            _, diff = board.edits.edit_card(
                c, card_id=card_id, changes=dict(changes), now=clock.now(), actor=b.actor
            )
        before = (card.model, tuple(card.agent_args), dict(card.agent_env))
        updated = board.set_agent_choices(
            c, card_id=card_id, model=model, args=args, env=env, now=clock.now(), actor=b.actor
        )
        after = (updated.model, tuple(updated.agent_args), dict(updated.agent_env))
        for name, old, new in zip(("model", "agent_args", "agent_env"), before, after, strict=True):
            if old != new:
                diff[name] = {"from": old, "to": new}
        return updated, diff

    return b.tx.write(apply, wake_dispatcher=True)


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
