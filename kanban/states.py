"""Card statuses, run outcomes, goal statuses, and the tables of allowed moves.

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
    STALLED = "stalled"  # no output for the profile's idle_timeout: stopped, attempt spent
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
    # `kanban unarchive`: back to the state it was archived from.
    S.ARCHIVED: frozenset(
        {S.TRIAGE, S.TODO, S.READY, S.REVIEW, S.BLOCKED, S.DONE, S.FAILED, S.CANCELLED}
    ),
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
        RunOutcome.STALLED,
        RunOutcome.RECLAIMED,
        RunOutcome.SPAWN_FAILED,
    }
)


class CardRole(enum.StrEnum):
    """What a goal's card is for; work cards have no role."""

    PLANNER = "planner"  # writes a plan to $KANBAN_PLAN_FILE
    JUDGE = "judge"  # writes a verdict to $KANBAN_VERDICT_FILE


class GoalStatus(enum.StrEnum):
    PLANNING = "planning"  # the planner card of the current turn is at work
    PROPOSED = "proposed"  # the plan's cards wait in triage for `kanban goal approve`
    WORKING = "working"  # the plan's cards are being worked
    JUDGING = "judging"  # every card is finished; the judge card is at work
    DONE = "done"
    BLOCKED = "blocked"  # needs a person: the turn budget is spent, or nothing can go on
    CANCELLED = "cancelled"


G = GoalStatus

GOAL_TRANSITIONS: dict[GoalStatus, frozenset[GoalStatus]] = {
    G.PLANNING: frozenset({G.PROPOSED, G.WORKING, G.BLOCKED, G.CANCELLED}),
    G.PROPOSED: frozenset({G.WORKING, G.BLOCKED, G.CANCELLED}),
    G.WORKING: frozenset({G.JUDGING, G.DONE, G.BLOCKED, G.CANCELLED}),
    G.JUDGING: frozenset({G.PLANNING, G.DONE, G.BLOCKED, G.CANCELLED}),
    G.BLOCKED: frozenset({G.CANCELLED}),
    G.DONE: frozenset(),
    G.CANCELLED: frozenset(),
}
GOAL_FINISHED = frozenset({G.DONE, G.CANCELLED})


class ScheduleKind(enum.StrEnum):
    CARD = "card"
    GOAL = "goal"


class Overlap(enum.StrEnum):
    SKIP = "skip"  # no new fire while the previous fire's card (or goal) is open
    ALLOW = "allow"


class CatchUp(enum.StrEnum):
    """Fires missed while no dispatcher ran (more than a grace period late)."""

    NONE = "none"  # drop them
    LATEST = "latest"  # fire the most recent one
    ALL = "all"  # fire each of them (up to a limit)


def check_move(card_id: int, current: str, target: CardStatus) -> None:
    """Raise InvalidTransition unless `current -> target` is in the table."""
    source = CardStatus(current)
    if target not in TRANSITIONS[source]:
        allowed = ", ".join(sorted(TRANSITIONS[source])) or "nothing (it is final)"
        raise errors.InvalidTransition(
            f"card {card_id} is {source}; it cannot become {target} (from {source}: {allowed})"
        )


def table_move(source: CardStatus, target: CardStatus) -> tuple[CardStatus, CardStatus]:
    """A move made by a set-based statement (a claim, a promotion), whose WHERE clause fixes
    its source: checked against the table once, when the statement's module is imported."""
    if target not in TRANSITIONS[source]:
        raise AssertionError(f"{source} -> {target} is not in the transition table")
    return source, target


def parse_status(value: str) -> CardStatus:
    try:
        return CardStatus(value.lower())
    except ValueError:
        known = ", ".join(s.value for s in CardStatus)
        raise errors.UsageError(f"unknown status {value!r}; use one of: {known}") from None


def check_goal_move(goal_id: int, current: str, target: GoalStatus) -> None:
    """Raise InvalidTransition unless the goal may go from `current` to `target`."""
    source = GoalStatus(current)
    if target not in GOAL_TRANSITIONS[source]:
        allowed = ", ".join(sorted(GOAL_TRANSITIONS[source])) or "nothing (it is final)"
        raise errors.InvalidTransition(
            f"goal {goal_id} is {source}; it cannot become {target} (from {source}: {allowed})"
        )
