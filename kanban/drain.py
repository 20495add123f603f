"""`kanban dispatch --drain`: run until nothing can make progress, then say how it went.

Drained means: nothing is running, no goal waits for a tick, and every ready card left either
cannot run at all (no profile, an unknown or broken one) or backs off past `max_wait` (a
rate-limit cooldown, a long backoff). Such cards are reported with the reason, not waited for.
The summary covers the cards this drain saw run (their runs' `claimed` events after it began):
done, blocked and failed, with reasons. A card that ended blocked or failed, or one left that
cannot run, makes the exit code non-zero (`ok_if_blocked`: only failed cards do).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from typing import Any

from kanban import api, board, clock, errors, profiles, views
from kanban.states import CardStatus

DEFAULT_MAX_WAIT = 60.0  # a backoff ending sooner is waited for; a 5-minute cooldown is not


@dataclasses.dataclass(frozen=True, slots=True)
class Left:
    card: views.CardView
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    done: tuple[views.CardView, ...]
    blocked: tuple[views.CardView, ...]
    failed: tuple[views.CardView, ...]
    other: tuple[views.CardView, ...]  # seen, and neither of those (review, ready again...)
    left: tuple[Left, ...]  # ready cards nothing can run now
    elapsed: float

    def exit_code(self, *, ok_if_blocked: bool = False) -> int:
        if self.failed:
            return 1
        if not ok_if_blocked and (self.blocked or self.left):
            return 1
        return 0

    def to_json(self, *, ok_if_blocked: bool = False) -> dict[str, Any]:
        def card(c: views.CardView) -> dict[str, Any]:
            return {"id": c.id, "title": c.title, "status": c.status, "reason": c.reason}

        return {
            "done": [card(c) for c in self.done],
            "blocked": [card(c) for c in self.blocked],
            "failed": [card(c) for c in self.failed],
            "other": [card(c) for c in self.other],
            "left": [{**card(x.card), "reason": x.reason} for x in self.left],
            "elapsed_seconds": round(self.elapsed, 2),
            "exit_code": self.exit_code(ok_if_blocked=ok_if_blocked),
        }


class Drain:
    """Decides after each tick whether the drain is over, and sums it up at the end."""

    def __init__(self, board_: api.Board, *, max_wait: float = DEFAULT_MAX_WAIT) -> None:
        self.board = board_
        self.max_wait = max_wait
        self.first_event = board_.tx.read(board.history.last_event_id)
        self.started = time.monotonic()
        self.left: list[Left] = []

    def over(self, now: dt.datetime | None = None) -> bool:
        now = now or clock.now()
        if self.board.status().counts["running"] or self.board.goals.due():
            return False
        if self._cleaning_up():
            return False  # a supervisor still commits or pushes what its ended run left
        left = self._stuck(now)
        if left is None:
            return False
        self.left = left + self._waiting()
        return True

    def _cleaning_up(self) -> bool:
        """This host's ended runs whose processes are not yet confirmed gone (kanban.liveness)."""
        host = self.board.settings.host_id
        return bool(self.board.tx.read(lambda c: board.releases.unreleased_runs(c, host=host)))

    def _waiting(self) -> list[Left]:
        """Cards waiting for parents that will not finish by themselves (blocked, review...)."""
        found = []
        for card in self.board.cards(CardStatus.TODO.value):
            parents = self.board.show(card.id).parents
            stuck = [p for p in parents if p.status not in ("done", "archived")]
            if stuck:
                listed = ", ".join(f"{p.id} ({p.status})" for p in stuck)
                found.append(Left(card, f"it waits for its parents: {listed}"))
        return found

    def _stuck(self, now: dt.datetime) -> list[Left] | None:
        """The ready cards no tick can start soon, with why; None when one can."""
        known, broken = profiles.load_all(repo=self.board.settings.repo)
        stuck: list[Left] = []
        for card in self.board.cards(CardStatus.READY.value):
            reason = _cannot_run(card, known, broken)
            if reason is None and card.not_before is not None:
                wait = (card.not_before - now).total_seconds()
                if wait > self.max_wait:
                    reason = (
                        f"backing off until {clock.iso(card.not_before)} "
                        f"(in {clock.human(wait)}, past the drain's limit of "
                        f"{clock.human(self.max_wait)})"
                    ) + (f": {card.reason}" if card.reason else "")
            if reason is None:
                return None
            stuck.append(Left(card, reason))
        return stuck

    def summary(self) -> Summary:
        seen = self.board.tx.read(
            lambda c: board.history.events_after(
                c, after_id=self.first_event, kinds=("claimed",), limit=1_000_000
            )
        )
        ids = sorted({e.card_id for e in seen if e.card_id is not None})
        cards = []
        for card_id in ids:
            try:
                cards.append(self.board.get(card_id))
            except errors.CardNotFound:
                continue
        by: dict[str, list[views.CardView]] = {"done": [], "blocked": [], "failed": []}
        other: list[views.CardView] = []
        left = {x.card.id for x in self.left}
        for card in cards:
            if card.id not in left:
                by.get(str(card.status), other).append(card)
        return Summary(
            done=tuple(by["done"]),
            blocked=tuple(by["blocked"]),
            failed=tuple(by["failed"]),
            other=tuple(other),
            left=tuple(self.left),
            elapsed=time.monotonic() - self.started,
        )


def _cannot_run(
    card: views.CardView, known: dict[str, profiles.Profile], broken: dict[str, str]
) -> str | None:
    if card.profile is None:
        return "it has no profile, so no agent can run it"
    if card.profile in broken:
        return f"its profile {card.profile!r} does not load: {broken[card.profile]}"
    if card.profile not in known:
        return f"its profile {card.profile!r} is unknown (known: {', '.join(sorted(known))})"
    return None


def render(summary: Summary) -> list[str]:
    """The summary as lines for a terminal or a CI log."""
    lines = [
        f"drained in {clock.human(summary.elapsed)}: {len(summary.done)} done, "
        f"{len(summary.blocked)} blocked, {len(summary.failed)} failed"
        + (f", {len(summary.left)} left that cannot run" if summary.left else "")
    ]
    for label, group in (("blocked", summary.blocked), ("failed", summary.failed)):
        for card in group:
            lines.append(f"  {label} {card.id} {_title(card)}: {card.reason or 'no reason given'}")
    for card in summary.other:
        lines.append(f"  {card.status} {card.id} {_title(card)}")
    for left in summary.left:
        lines.append(f"  left {left.card.id} {_title(left.card)}: {left.reason}")
    return lines


def _title(card: views.CardView) -> str:
    title = " ".join(card.title.split())
    return json.dumps(title if len(title) <= 60 else title[:59] + "…")
