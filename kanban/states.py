"""Card statuses, run outcomes and the one table of allowed moves.

Statuses are stored as strings with a CHECK constraint built from these enums.
"""

from __future__ import annotations

import enum

from kanban import errors


class CardStatus(enum.StrEnum):
    TRIAGE = "triage"  # proposed, not yet accepted (e.g. an unapproved goal plan)
    TODO = "todo"  # waiting for parents
    READY = "ready"  # every parent done; may be claimed
    RUNNING = "running"  # has a live run
    REVIEW = "review"  # the agent finished; a person approves (complete) or sends back (retry)
    BLOCKED = "blocked"  # needs a person: the agent asked, or the retry budget ran out
    DONE = "done"
    FAILED = "failed"  # given up by a person
    CANCELLED = "cancelled"
    ARCHIVED = "archived"


class RunOutcome(enum.StrEnum):
    DONE = "done"
    FAILED = "failed"
    CRASHED = "crashed"
    TIMED_OUT = "timed_out"
    RECLAIMED = "reclaimed"
    RATE_LIMITED = "rate_limited"
    SPAWN_FAILED = "spawn_failed"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"


S = CardStatus

# Every move a card may make, and nothing else. Moves into RUNNING happen only through a claim.
TRANSITIONS: dict[CardStatus, frozenset[CardStatus]] = {
    S.TRIAGE: frozenset({S.TODO, S.READY, S.CANCELLED, S.ARCHIVED}),
    S.TODO: frozenset({S.READY, S.BLOCKED, S.DONE, S.CANCELLED, S.ARCHIVED}),
    S.READY: frozenset({S.TODO, S.RUNNING, S.BLOCKED, S.DONE, S.CANCELLED, S.ARCHIVED}),
    S.RUNNING: frozenset({S.READY, S.TODO, S.REVIEW, S.BLOCKED, S.DONE, S.FAILED, S.CANCELLED}),
    S.REVIEW: frozenset({S.DONE, S.READY, S.TODO, S.BLOCKED, S.CANCELLED, S.ARCHIVED}),
    S.BLOCKED: frozenset({S.READY, S.TODO, S.DONE, S.FAILED, S.CANCELLED, S.ARCHIVED}),
    S.FAILED: frozenset({S.READY, S.TODO, S.CANCELLED, S.ARCHIVED}),
    S.DONE: frozenset({S.ARCHIVED}),
    S.CANCELLED: frozenset({S.READY, S.TODO, S.ARCHIVED}),
    S.ARCHIVED: frozenset(),
}

# Statuses that end a card's life; children of such a card (other than DONE) wait for a person.
FINISHED = frozenset({S.DONE, S.FAILED, S.CANCELLED, S.ARCHIVED})
# Statuses in which a card still counts as open work (used by `--overlap skip`, goal progress).
OPEN = frozenset({S.TRIAGE, S.TODO, S.READY, S.RUNNING, S.REVIEW, S.BLOCKED})

# Outcomes that spend one of the card's attempts. Rate limits and manual cancels do not.
SPENDS_ATTEMPT = frozenset(
    {
        RunOutcome.FAILED,
        RunOutcome.CRASHED,
        RunOutcome.TIMED_OUT,
        RunOutcome.RECLAIMED,
        RunOutcome.SPAWN_FAILED,
    }
)


def check_move(card_id: int, current: str, target: CardStatus) -> None:
    """Raise InvalidTransition unless `current -> target` is in the table."""
    source = CardStatus(current)
    if target not in TRANSITIONS[source]:
        allowed = ", ".join(sorted(TRANSITIONS[source])) or "nothing (it is final)"
        raise errors.InvalidTransition(
            f"card {card_id} is {source}; it cannot become {target} (from {source}: {allowed})"
        )


def parse_status(value: str) -> CardStatus:
    try:
        return CardStatus(value.lower())
    except ValueError:
        known = ", ".join(s.value for s in CardStatus)
        raise errors.UsageError(f"unknown status {value!r}; use one of: {known}") from None
