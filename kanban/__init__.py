"""kanban: a SQLite-backed Kanban board that dispatches coding agents into git worktrees.

import kanban
board = kanban.open_board(".kanban/board.db")
card = board.add("Write the parser")
claim = board.claim()
board.complete(claim.card_id, token=claim.token, summary="parser written")
"""

from __future__ import annotations

from typing import Any

from kanban.errors import (
    CardNotFound,
    CycleError,
    InvalidTransition,
    KanbanError,
    LeaseLost,
    ProfileError,
    SchemaError,
    UsageError,
)
from kanban.states import CardStatus, RunOutcome

__all__ = [
    "Board",
    "CardNotFound",
    "CardStatus",
    "CycleError",
    "InvalidTransition",
    "KanbanError",
    "LeaseLost",
    "ProfileError",
    "RunOutcome",
    "SchemaError",
    "UsageError",
    "__version__",
    "open_board",
]


def __getattr__(name: str) -> Any:
    # Lazy: `import kanban` stays cheap for the CLI and for agents calling it.
    if name in ("open_board", "Board"):
        from kanban import api

        return getattr(api, name)
    if name == "__version__":
        from kanban.__about__ import __version__

        return __version__
    raise AttributeError(f"module 'kanban' has no attribute {name!r}")
