"""The domain verbs: the only code that writes card and run rows.

Every verb takes an open connection (the caller owns the transaction) and keyword
arguments, and returns frozen views. Import the package, not its names:
`from kanban import board; board.claim(conn, ...)`.
"""

from kanban.board import (
    agent,
    dispatchers,
    edits,
    goals,
    history,
    outbox,
    releases,
    schedules,
    turns,
)
from kanban.board.cards import (
    add_card,
    check_profile_name,
    comment,
    link,
    move,
    promote,
    unlink,
)
from kanban.board.choices import set_agent_choices
from kanban.board.queries import (
    card_detail,
    children_of,
    cost_by_card,
    events_of,
    get_card,
    get_run,
    list_cards,
    live_run_of,
    live_runs,
    next_due,
    ready_candidates,
    ready_profiles,
    recent_cards,
    running,
    runs_of,
    status_summary,
)
from kanban.board.queries import (
    dispatchers as list_dispatchers,
)
from kanban.board.runs import (
    Backoff,
    claim,
    end_run,
    expired_runs,
    heartbeat,
    lease_lost,
    reclaim_expired,
    record_start,
    token_of,
)
from kanban.board.usage import goal_spend, record_usage, set_cost_cap, spend

__all__ = [
    "Backoff",
    "add_card",
    "agent",
    "card_detail",
    "check_profile_name",
    "children_of",
    "claim",
    "comment",
    "cost_by_card",
    "dispatchers",
    "edits",
    "end_run",
    "events_of",
    "expired_runs",
    "get_card",
    "get_run",
    "goal_spend",
    "goals",
    "heartbeat",
    "history",
    "lease_lost",
    "link",
    "list_cards",
    "list_dispatchers",
    "live_run_of",
    "live_runs",
    "move",
    "next_due",
    "outbox",
    "promote",
    "ready_candidates",
    "ready_profiles",
    "recent_cards",
    "reclaim_expired",
    "record_start",
    "record_usage",
    "releases",
    "running",
    "runs_of",
    "schedules",
    "set_agent_choices",
    "set_cost_cap",
    "spend",
    "status_summary",
    "token_of",
    "turns",
    "unlink",
]
