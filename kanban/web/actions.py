"""What the web may do to a card, each through the same `api.Board` verb the CLI calls.

One table serves the JSON API (`POST /api/cards/{id}/{action}`), the page's forms and the
OpenAPI description. Input is checked against the table before any verb runs: an unknown
field, a wrong type or a missing required field is refused and changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from kanban import api, bulk, editing, errors
from kanban.states import CardStatus

S = CardStatus
OPEN = frozenset({S.TRIAGE, S.TODO, S.READY, S.RUNNING, S.REVIEW, S.BLOCKED})


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "str", "int", "float", "bool", "ints", "strs"
    help: str
    required: bool = False


@dataclasses.dataclass(frozen=True)
class Action:
    name: str
    summary: str
    fields: tuple[Field, ...]
    apply: Callable[[api.Board, int, dict[str, Any]], Any]
    shown_for: frozenset[CardStatus] = frozenset(S)  # where the page offers it (verbs decide)


def _move(verb: str) -> Callable[[api.Board, int, dict[str, Any]], Any]:
    """The CLI's verb (`kanban unblock 12 --note ...`): `bulk.apply` on this one card."""

    def apply(board: api.Board, card_id: int, fields: dict[str, Any]) -> Any:
        if verb == "send-back" and not (fields.get("note") or "").strip():
            raise errors.UsageError("give a note saying what to change")
        return bulk.apply(board, [card_id], verb=verb, **fields)[0]

    return apply


def _link(board: api.Board, card_id: int, f: dict[str, Any], *, unlink: bool) -> Any:
    if ("parent" in f) == ("child" in f):
        raise errors.UsageError("give either parent (this card waits for it) or child")
    parent, child = (f["parent"], card_id) if "parent" in f else (card_id, f["child"])
    if unlink:
        board.unlink(parent, child)
        return board.get(card_id)
    board.link(parent, child)
    return board.get(card_id)


NOTE = Field("note", "str", "A comment for the next agent (what you decided).")
LINK_FIELDS = (
    Field("parent", "int", "This card waits for that one."),
    Field("child", "int", "That card waits for this one."),
)

CARD_ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action(
            "comment",
            "Add a comment the next agent reads",
            (Field("body", "str", "The comment.", required=True),),
            lambda b, c, f: b.comment(c, f["body"]),
        ),
        Action(
            "unblock",
            "Answer a blocked card: the answer becomes a comment, the card runs again",
            (Field("note", "str", "Your answer, shown to the next attempt."),),
            _move("unblock"),
            frozenset({S.BLOCKED}),
        ),
        Action(
            "retry",
            "Run it again with a fresh attempt budget",
            (NOTE,),
            _move("retry"),
            frozenset({S.FAILED, S.BLOCKED, S.CANCELLED, S.TRIAGE}),
        ),
        Action(
            "approve",
            "Accept the work of a card in review (review -> done)",
            (NOTE,),
            _move("approve"),
            frozenset({S.REVIEW}),
        ),
        Action(
            "send-back",
            "Send a card in review back to work with a note saying what to change",
            (Field("note", "str", "What to change.", required=True),),
            _move("send-back"),
            frozenset({S.REVIEW}),
        ),
        Action(
            "cancel",
            "Cancel the card (a live run loses its lease)",
            (Field("reason", "str", "Why (kept on the card)."),),
            _move("cancel"),
            OPEN,
        ),
        Action(
            "archive",
            "Archive the card",
            (),
            _move("archive"),
            frozenset({S.DONE, S.FAILED, S.CANCELLED}),
        ),
        Action(
            "unarchive",
            "Bring an archived card back to the state it was archived from",
            (),
            _move("unarchive"),
            frozenset({S.ARCHIVED}),
        ),
        Action(
            "link",
            "Add a dependency",
            LINK_FIELDS,
            lambda b, c, f: _link(b, c, f, unlink=False),
        ),
        Action(
            "unlink",
            "Remove a dependency",
            LINK_FIELDS,
            lambda b, c, f: _link(b, c, f, unlink=True),
        ),
    )
}

ADD_FIELDS = (
    Field("title", "str", "One line saying what to do.", required=True),
    Field("body", "str", "Details for the agent."),
    Field("profile", "str", "Agent profile that works it."),
    Field("parents", "ints", "Cards that must be done first."),
    Field("priority", "int", "Higher runs first."),
    Field("paths", "strs", "Globs it will touch (no two overlapping cards run at once)."),
    Field("max_attempts", "int", "Attempts before it is blocked."),
    Field("timeout", "str", "Per-run limit such as 30m or 2h."),
    Field("key", "str", "Idempotency key: the same key returns the first card."),
    Field("review", "bool", "A person approves its work before it counts as done."),
    Field("triage", "bool", "Start in triage (proposed, not yet accepted)."),
    Field("max_cost_usd", "float", "Cap on what all of its runs may cost together."),
)


def add_card(board: api.Board, fields: dict[str, Any]) -> Any:
    """`kanban add`: the profile checked, then `Board.add`."""
    return editing.add(board, fields.pop("title"), **fields)


EDIT_FIELDS = (
    Field("title", "str", "One line saying what to do."),
    Field("body", "str", "Details for the agent."),
    Field("priority", "int", "Higher runs first."),
    Field("profile", "str", "Agent profile that works it."),
    Field("paths", "strs", "Replace its path globs ([] removes them)."),
    Field("max_attempts", "int", "Attempts before it is blocked."),
    Field("timeout", "str", "Per-run limit with its unit: 90s, 30m, 2h."),
    Field("max_cost_usd", "float", "Cost cap in USD over all its runs."),
    Field("review", "bool", "Stop in review for a person when done, or not."),
)


def edit_card(board: api.Board, card_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    """`kanban edit --json`: the card and what changed."""
    if fields.get("paths") == []:
        fields["paths"] = None
    card, diff = editing.edit(board, card_id, **fields)
    return {"card": card.to_json(), "changed": diff}


CARD_ACTIONS["edit"] = Action(
    "edit",
    "Change a card in place (the same as PATCH /api/cards/{id})",
    EDIT_FIELDS,
    edit_card,
    OPEN | {S.DONE, S.FAILED, S.CANCELLED},
)


GOAL_ACTIONS: dict[str, Action] = {
    "approve": Action(
        "approve",
        "Approve the goal's proposed plan: its cards leave triage",
        (),
        lambda b, g, f: b.goals.approve(g),
    ),
    "cancel": Action(
        "cancel",
        "Cancel the goal and its open cards",
        (Field("reason", "str", "Why (kept on the goal and its cards)."),),
        lambda b, g, f: b.goals.cancel(g, reason=f.get("reason")),
    ),
}

SCHEDULE_ACTIONS: dict[str, Callable[[api.Board, str], Any]] = {
    "pause": lambda b, name: b.schedules.pause(name),
    "resume": lambda b, name: b.schedules.pause(name, paused=False),
}


def check(fields: tuple[Field, ...], data: object, *, what: str) -> dict[str, Any]:
    """JSON input checked against `fields`: a clear refusal for anything else."""
    if not isinstance(data, Mapping):
        raise errors.UsageError(f"{what} takes a JSON object, not {type(data).__name__}")
    known = {f.name: f for f in fields}
    unknown = sorted(set(data) - set(known))
    if unknown:
        allowed = ", ".join(known) or "no fields"
        raise errors.UsageError(f"unknown field {unknown[0]!r} for {what}; it takes {allowed}")
    out: dict[str, Any] = {}
    for f in fields:
        if f.name not in data or data[f.name] is None:
            if f.required:
                raise errors.UsageError(f"{what} needs the field {f.name!r} ({f.help})")
            continue
        out[f.name] = _typed(f, data[f.name], what=what)
    return out


def _typed(f: Field, value: object, *, what: str) -> Any:
    def bad() -> errors.UsageError:
        return errors.UsageError(f"{what}: {f.name!r} must be {KIND_WORDS[f.kind]}, not {value!r}")

    if f.kind == "str":
        if not isinstance(value, str):
            raise bad()
        return value
    if f.kind == "bool":
        if not isinstance(value, bool):
            raise bad()
        return value
    if f.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if f.kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        return float(value)
    if not isinstance(value, list):
        raise bad()
    if f.kind == "ints":
        if any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise bad()
        return value
    if any(not isinstance(v, str) for v in value):
        raise bad()
    return value


KIND_WORDS = {
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "ints": "a list of card ids",
    "strs": "a list of strings",
}


def from_form(fields: tuple[Field, ...], form: Mapping[str, str]) -> dict[str, Any]:
    """A page's form (all strings) as the JSON the API takes; blanks are left out."""
    out: dict[str, Any] = {}
    for f in fields:
        raw = form.get(f.name, "").strip() if f.kind != "str" else form.get(f.name, "")
        if f.kind == "bool":
            if raw:
                out[f.name] = raw.lower() in ("on", "true", "1", "yes")
            continue
        if raw == "" or (f.kind == "str" and not raw.strip() and not f.required):
            continue
        if f.kind == "str":
            out[f.name] = raw
        elif f.kind in ("int", "float"):
            out[f.name] = _number(f, raw)
        elif f.kind == "ints":
            out[f.name] = [_number(f, p.strip().lstrip("#")) for p in raw.split(",") if p.strip()]
        else:
            out[f.name] = [p.strip() for p in raw.split(",") if p.strip()]
    return out


def _number(f: Field, raw: str) -> int | float:
    try:
        return int(raw) if f.kind != "float" else float(raw)
    except ValueError:
        raise errors.UsageError(f"{f.name} must be {KIND_WORDS[f.kind]}, not {raw!r}") from None


def card_id(text: str) -> int:
    """A card id from a URL, refused the way the CLI refuses it."""
    cleaned = text.strip().lstrip("#")
    if not cleaned.isdigit() or int(cleaned) < 1 or len(cleaned) > 18:
        raise errors.UsageError(f"a card id is a positive number like 12, not {text!r}")
    return int(cleaned)
