"""`kanban why` with no card: every card that could run but is not running, and every card
stuck on a person, each with the reasons `why.explain` gives for it alone."""

from __future__ import annotations

import dataclasses

from kanban import api, views, why
from kanban.states import CardStatus

S = CardStatus
# A parent in one of these states holds its children until a person acts.
NEEDS_A_PERSON = frozenset({S.BLOCKED, S.REVIEW, S.FAILED, S.CANCELLED, S.TRIAGE})


@dataclasses.dataclass(frozen=True, slots=True)
class Stuck(views._View):
    card: views.CardView
    reasons: tuple[str, ...]


def waiting(cards: list[views.CardView]) -> list[views.CardView]:
    """Ready cards (not running, by definition), cards that need a person themselves, and
    `todo` cards whose parent needs one: what a person may want to look at, oldest first."""
    status = {c.id: c.status for c in cards}

    def looks(card: views.CardView) -> bool:
        if card.status in (S.READY, S.BLOCKED, S.REVIEW, S.TRIAGE):
            return True
        return card.status == S.TODO and any(status.get(p) in NEEDS_A_PERSON for p in card.parents)

    return [c for c in cards if looks(c)]


def explain_all(b: api.Board, *, limit: int = 50) -> tuple[list[Stuck], int]:
    """The first `limit` waiting cards with their reasons, and how many waited in all."""
    found = waiting(b.cards())
    return [Stuck(card=c, reasons=tuple(why.explain(b, c.id))) for c in found[:limit]], len(found)
