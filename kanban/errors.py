"""The error tree. Every refusal the user sees is a `KanbanError` carrying its own message.

The CLI maps these to exit codes (see `exit_code`); library callers catch them by class.
Messages say what was wrong and what to do about it, in one line.
"""

from __future__ import annotations


class KanbanError(Exception):
    """Root of every error kanban raises on purpose."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(KanbanError):
    """Input that can never work: an empty title, a negative priority, a bad duration."""

    exit_code = 2


class CardNotFound(KanbanError, LookupError):
    exit_code = 3

    def __init__(self, card_id: object) -> None:
        super().__init__(f"no card {card_id} on this board (see `kanban ls`)")
        self.card_id = card_id


class InvalidTransition(KanbanError):
    """A status change the transition table does not allow."""

    exit_code = 4


class CycleError(KanbanError):
    exit_code = 4

    def __init__(self, cycle: list[int]) -> None:
        path = " -> ".join(str(c) for c in cycle)
        super().__init__(f"refused: that link would close a cycle {path}; dependencies form a DAG")
        self.cycle = cycle


class LeaseLost(KanbanError):
    """A write with a token that is no longer the card's current lease."""

    exit_code = 5


class ProfileError(KanbanError):
    exit_code = 6


class WorktreeError(KanbanError):
    exit_code = 7


class MergeConflict(WorktreeError):
    def __init__(self, message: str, files: list[str]) -> None:
        super().__init__(message)
        self.files = files


class SpawnError(KanbanError):
    exit_code = 8


class Permanent:
    """Mixed into errors that no retry can fix (a missing program, a repository without a
    commit): the run is blocked at once with the fix in the reason, spending one attempt."""


class ProgramMissing(Permanent, SpawnError):
    """The agent's program is not there or not executable."""


class RepositoryUnusable(Permanent, WorktreeError):
    """Not a git repository, no commit yet, or a worktree root that cannot be made."""


class BoardNotFound(KanbanError):
    exit_code = 9


class BoardGone(BoardNotFound):
    """The board a dispatcher works on was deleted or replaced under it."""


class SchemaError(KanbanError):
    """The database is not a board, or its schema is newer than this code."""

    exit_code = 9


class DatabaseError(KanbanError):
    """A driver error we could not retry away; the original is chained as __cause__."""

    exit_code = 10


class PlanError(KanbanError):
    """A plan or verdict that does not validate (a cycle, an unknown profile, bad JSON...)."""

    exit_code = 11


class ScheduleError(KanbanError):
    """A schedule that cannot work: a malformed cron expression, an unknown time zone..."""

    exit_code = 12


class HealthError(KanbanError):
    """A health probe failed: the dispatcher is not live, or not ready to take cards."""

    exit_code = 13


class GoalNotFound(KanbanError, LookupError):
    exit_code = 3

    def __init__(self, goal_id: object) -> None:
        super().__init__(f"no goal {goal_id} on this board (see `kanban goal ls`)")
        self.goal_id = goal_id


class ScheduleNotFound(KanbanError, LookupError):
    exit_code = 3

    def __init__(self, name: object) -> None:
        super().__init__(f"no schedule named {name!r} on this board (see `kanban cron ls`)")
        self.name = name


__all__ = [
    "BoardNotFound",
    "CardNotFound",
    "CycleError",
    "DatabaseError",
    "GoalNotFound",
    "HealthError",
    "InvalidTransition",
    "KanbanError",
    "LeaseLost",
    "MergeConflict",
    "Permanent",
    "PlanError",
    "ProfileError",
    "ProgramMissing",
    "RepositoryUnusable",
    "ScheduleError",
    "ScheduleNotFound",
    "SchemaError",
    "SpawnError",
    "UsageError",
    "WorktreeError",
]
