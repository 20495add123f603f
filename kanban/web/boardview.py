"""What the board page shows, read in one place: columns, tiles and badges, filters, the
selected card's dependencies, dispatchers and their health, goals and their turns.

Everything here reads; the values handed to templates are plain and frozen.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from kanban import api, board, clock, errors, views, why
from kanban.states import GOAL_FINISHED, CardStatus, parse_status

S = CardStatus
LISTED = (S.TRIAGE, S.TODO, S.READY, S.RUNNING, S.REVIEW, S.BLOCKED, S.FAILED)
FOLDED = (S.DONE, S.CANCELLED, S.ARCHIVED)  # shown as a count and the latest few
PEEK = 8  # cards shown inside a folded column
LIMIT = 2000  # cards listed in one column at most


@dataclasses.dataclass(frozen=True)
class Filters:
    text: str = ""
    profile: str = ""
    goal: int | None = None
    status: CardStatus | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filters:
        goal = query.get("goal", "").strip()
        if goal and not goal.isdigit():
            raise errors.UsageError(f"a goal id is a positive number like 3, not {goal!r}")
        status = query.get("status", "").strip()
        return cls(
            text=query.get("q", "").strip(),
            profile=query.get("profile", "").strip(),
            goal=int(goal) if goal else None,
            status=parse_status(status) if status else None,
        )

    @property
    def active(self) -> bool:
        return bool(self.text or self.profile or self.goal or self.status)

    def keep(self, card: views.CardView) -> bool:
        return self.goal is None or card.goal_id == self.goal


@dataclasses.dataclass(frozen=True)
class Tile:
    card: views.CardView
    cost: float | None
    badges: tuple[tuple[str, str], ...]  # (css class, text)
    host: str | None  # where its live run is


@dataclasses.dataclass(frozen=True)
class Column:
    status: CardStatus
    count: int  # on the board (with the filters: shown)
    tiles: tuple[Tile, ...]
    folded: bool


@dataclasses.dataclass(frozen=True)
class Dispatcher:
    name: str
    host: str
    health: str  # "alive", "silent" or "stopped"
    ticked: str


@dataclasses.dataclass(frozen=True)
class BoardPage:
    columns: tuple[Column, ...]
    filters: Filters
    profiles: tuple[str, ...]
    selected: views.CardDetail | None
    dispatchers: tuple[Dispatcher, ...]
    liveness: str
    alive: bool
    goals: tuple[views.GoalView, ...]
    status: views.BoardStatus

    @property
    def child_ids(self) -> frozenset[int]:
        return frozenset(c.id for c in self.selected.children) if self.selected else frozenset()

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": {
                c.status.value: {
                    "count": c.count,
                    "folded": c.folded,
                    "cards": [t.card.to_json() | {"cost_usd": t.cost} for t in c.tiles],
                }
                for c in self.columns
            },
            "dispatchers": [dataclasses.asdict(d) for d in self.dispatchers],
            "dispatcher_alive": self.alive,
            "goals": [g.to_json() for g in self.goals],
        }


def badges(card: views.CardView, now: dt.datetime) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    if card.status == S.READY and card.not_before is not None and card.not_before > now:
        out.append(("backoff", f"backoff {clock.human((card.not_before - now).total_seconds())}"))
    if card.attempts and card.status in (S.READY, S.RUNNING, S.TODO):
        out.append(("retry", f"retry {card.attempts}"))
    if card.status == S.BLOCKED:
        out.append(("blocked", card.reason or "needs a person"))
    if card.status == S.REVIEW or (card.review and card.status not in (S.DONE, S.ARCHIVED)):
        out.append(("review", "review"))
    if card.role:
        out.append(("role", card.role))
    return tuple(out)


def _tiles(
    cards: Sequence[views.CardView], costs: Mapping[int, float], hosts: Mapping[int, str]
) -> tuple[Tile, ...]:
    now = clock.now()
    return tuple(Tile(c, costs.get(c.id), badges(c, now), hosts.get(c.id)) for c in cards)


def read(board_: api.Board, filters: Filters, *, selected: int | None = None) -> BoardPage:
    status = board_.status()

    def find(statuses: list[CardStatus]) -> list[views.CardView]:
        found = board_.cards(
            statuses,
            profile=filters.profile or None,
            search=filters.text or None,
            include_archived=True,
            limit=LIMIT,
        )
        return [c for c in found if filters.keep(c)]

    def peek(s: CardStatus) -> list[views.CardView]:
        return board_.tx.read(lambda c: board.recent_cards(c, status=s, limit=PEEK))

    listed = find([filters.status] if filters.status else list(LISTED))
    folded: dict[CardStatus, list[views.CardView]] = {}
    if filters.status is None:
        for s in FOLDED:
            folded[s] = find([s]) if filters.active else peek(s)
    every = listed + [c for cs in folded.values() for c in cs]
    costs = board_.tx.read(lambda c: board.cost_by_card(c, [x.id for x in every]))
    hosts = {r.card_id: r.host for r in status.running}
    columns = []
    for s in [filters.status] if filters.status else [*LISTED, *FOLDED]:
        if s in folded:
            count = len(folded[s]) if filters.active else status.counts.get(s.value, 0)
            tiles = _tiles(folded[s][:PEEK], costs, hosts)
            columns.append(Column(s, count, tiles, folded=True))
        else:
            mine = [c for c in listed if c.status == s]
            columns.append(Column(s, len(mine), _tiles(mine, costs, hosts), folded=False))
    alive, liveness = why.dispatcher_liveness(board_, status.now or clock.now())
    return BoardPage(
        columns=tuple(columns),
        filters=filters,
        profiles=tuple(sorted({c.profile for c in listed if c.profile})),
        selected=board_.show(selected) if selected is not None else None,
        dispatchers=_dispatchers(board_, status.now or clock.now()),
        liveness=liveness,
        alive=alive,
        goals=tuple(g for g in board_.goals.ls() if g.status not in GOAL_FINISHED),
        status=status,
    )


def _dispatchers(board_: api.Board, now: dt.datetime) -> tuple[Dispatcher, ...]:
    out = []
    for row in board_.tx.read(board.list_dispatchers)[:10]:
        beat = why._utc(row["heartbeat_at"])
        age = (now - beat).total_seconds()
        if row["stopped_at"] is not None:
            health = "stopped"
        elif age <= why.DISPATCHER_SLACK * float(str(row["interval_s"])) + 30:
            health = "alive"
        else:
            health = "silent"
        out.append(
            Dispatcher(str(row["name"]), str(row.get("host") or ""), health, clock.human(age))
        )
    return tuple(out)
