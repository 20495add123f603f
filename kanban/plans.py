"""Plans and verdicts: what a goal's planner and judge write, parsed and checked.

Pure functions of the text and the names of the known profiles: nothing here touches the
board, so a plan is refused whole before any card of it exists.

A plan (written to $KANBAN_PLAN_FILE, or given to `kanban goal add --plan FILE`):

    {"cards": [
      {"key": "parser", "title": "Write the CSV parser", "profile": "claude-code",
       "body": "...", "paths": ["src/csv/**"]},
      {"key": "tests", "title": "Test the parser", "profile": "codex", "after": ["parser"]}
    ]}

A verdict (written to $KANBAN_VERDICT_FILE): {"done": false, "reason": "no tests for ..."}.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from kanban import errors

MAX_CARDS = 200
MAX_TITLE = 500
MAX_BODY = 100_000
MAX_REASON = 10_000
CARD_KEYS = frozenset({"key", "title", "body", "profile", "after", "paths", "model", "args", "env"})
MAX_MODEL = 200
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PROFILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

FORMAT = """\
{"cards": [
  {"key": "parser", "title": "Write the CSV parser", "profile": "PROFILE",
   "body": "what to do, in detail", "paths": ["src/csv/**"]},
  {"key": "tests", "title": "Test the CSV parser", "profile": "PROFILE",
   "body": "...", "after": ["parser"]}
]}"""


@dataclasses.dataclass(frozen=True, slots=True)
class PlanCard:
    key: str  # unique within the plan; `after` refers to it
    title: str
    profile: str
    body: str = ""
    after: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    model: str | None = None  # the planner's choice; its profile must take one (model_args)
    args: tuple[str, ...] = ()  # extra options its profile allows (card_args)
    env: tuple[tuple[str, str], ...] = ()  # variables its profile allows (card_env)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key": self.key,
            "title": self.title,
            "profile": self.profile,
            "body": self.body,
            "after": list(self.after),
            "paths": list(self.paths),
        }
        if self.model is not None:
            data["model"] = self.model
        if self.args:
            data["args"] = list(self.args)
        if self.env:
            data["env"] = dict(self.env)
        return data


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    cards: tuple[PlanCard, ...]  # parents before children

    def to_json(self) -> dict[str, Any]:
        return {"cards": [c.to_json() for c in self.cards]}


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    done: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"done": self.done, "reason": self.reason}


def _refuse(message: str) -> errors.PlanError:
    return errors.PlanError(message)


def _load_json(text: str, what: str) -> Any:
    if not text.strip():
        raise _refuse(f"the {what} is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _refuse(
            f"the {what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def parse_plan(text: str, *, known_profiles: Collection[str]) -> Plan:
    """Parse and check a plan; PlanError says what is wrong with it."""
    return check_plan(_load_json(text, "plan"), known_profiles=known_profiles)


def check_plan(data: Any, *, known_profiles: Collection[str]) -> Plan:
    """A plan from already-decoded JSON: `{"cards": [...]}` or the list of cards itself."""
    if isinstance(data, Mapping):
        extra = sorted(set(data) - {"cards"})
        if extra:
            raise _refuse(f'the plan has unknown key(s) {", ".join(extra)}; it holds only "cards"')
        data = data.get("cards")
    if not isinstance(data, list):
        raise _refuse('the plan must be {"cards": [...]} with a list of cards')
    if not data:
        raise _refuse("the plan has no cards")
    if len(data) > MAX_CARDS:
        raise _refuse(f"the plan has {len(data)} cards; at most {MAX_CARDS} per turn")
    cards = [_card(raw, i, known_profiles) for i, raw in enumerate(data, start=1)]
    keys = [c.key for c in cards]
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise _refuse(f"the plan has two cards with key {key!r}; keys must be unique")
        seen.add(key)
    for card in cards:
        for parent in card.after:
            if parent == card.key:
                raise _refuse(f"card {card.key!r} lists itself in `after`")
            if parent not in seen:
                raise _refuse(
                    f"card {card.key!r} comes after {parent!r}, which is not a key of this plan"
                )
    return Plan(cards=tuple(_topological(cards)))


def _card(raw: Any, index: int, known_profiles: Collection[str]) -> PlanCard:
    where = f"card {index}"
    if not isinstance(raw, Mapping):
        raise _refuse(f"{where} of the plan is not an object with key, title and profile")
    key = raw.get("key")
    if not isinstance(key, str) or not _KEY.fullmatch(key.strip()):
        raise _refuse(
            f"{where} needs a key: letters, digits, '.', '-', '_' (up to 64), got {key!r}"
        )
    key = key.strip()
    where = f"card {key!r}"
    unknown = sorted(set(raw) - CARD_KEYS)
    if unknown:
        known = ", ".join(sorted(CARD_KEYS))
        raise _refuse(f"{where} has unknown key(s) {', '.join(unknown)}; known: {known}")
    title = raw.get("title")
    if not isinstance(title, str) or not title.strip():
        raise _refuse(f"{where} has an empty title; every card needs one")
    title = title.strip()
    if "\n" in title or "\r" in title or "\x00" in title:
        raise _refuse(f"{where}: the title must be one line; put details in the body")
    if len(title) > MAX_TITLE:
        raise _refuse(f"{where}: the title is {len(title)} characters; at most {MAX_TITLE}")
    body = raw.get("body", "")
    if not isinstance(body, str) or "\x00" in body or len(body) > MAX_BODY:
        raise _refuse(f"{where}: the body must be text of at most {MAX_BODY:,} characters")
    profile = raw.get("profile")
    if not isinstance(profile, str) or not profile.strip():
        raise _refuse(f"{where} has no profile; known profiles: {_names(known_profiles)}")
    profile = profile.strip()
    if not _PROFILE.fullmatch(profile) or profile not in known_profiles:
        raise _refuse(
            f"{where} names unknown profile {profile!r}; known profiles: {_names(known_profiles)}"
        )
    model = raw.get("model")
    if model is not None and (
        not isinstance(model, str)
        or not model.strip()
        or len(model) > MAX_MODEL
        or any(ch < " " for ch in model)
    ):
        raise _refuse(f"{where}: `model` must be a model name of one line (at most {MAX_MODEL})")
    env = raw.get("env") or {}
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise _refuse(f"{where}: `env` must be an object of variable names to text values")
    return PlanCard(
        key=key,
        title=title,
        profile=profile,
        body=body,
        model=model.strip() if model else None,
        args=tuple(_strings(raw.get("args", []), where, "args")),
        env=tuple(sorted(env.items())),
        after=tuple(dict.fromkeys(_strings(raw.get("after", []), where, "after"))),
        paths=tuple(_path(p, where) for p in _strings(raw.get("paths", []), where, "paths")),
    )


def _names(known: Collection[str]) -> str:
    return ", ".join(sorted(known)) or "none"


def _strings(value: Any, where: str, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _refuse(f"{where}: `{field}` must be a list of strings")
    return [v.strip() for v in value]


def _path(glob: str, where: str) -> str:
    if not glob or glob.startswith("/") or ".." in glob.split("/") or "\n" in glob:
        raise _refuse(f"{where}: path {glob!r} must be a glob relative to the repository")
    return glob


def _topological(cards: Sequence[PlanCard]) -> list[PlanCard]:
    """Parents before children, otherwise in the plan's order; a cycle is refused, named."""
    by_key = {c.key: c for c in cards}
    state: dict[str, int] = {}  # 1: on the current path, 2: placed
    ordered: list[PlanCard] = []

    def visit(key: str, path: list[str]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            cycle = [*path[path.index(key) :], key]
            raise _refuse(f"the plan's `after` links form a cycle: {' after '.join(cycle)}")
        state[key] = 1
        for parent in by_key[key].after:
            visit(parent, [*path, key])
        state[key] = 2
        ordered.append(by_key[key])

    for card in cards:
        visit(card.key, [])
    return ordered


def parse_verdict(text: str) -> Verdict:
    """Parse a judge's verdict: {"done": true|false, "reason": "..."}."""
    data = _load_json(text, "verdict")
    if not isinstance(data, Mapping) or not isinstance(data.get("done"), bool):
        raise _refuse('the verdict must be {"done": true or false, "reason": "..."}')
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        raise _refuse("the verdict's reason must be text")
    reason = reason.strip()[:MAX_REASON]
    if not data["done"] and not reason:
        raise _refuse("a verdict of not done needs a reason: the next planning turn reads it")
    return Verdict(done=data["done"], reason=reason)
