"""Verbs on goals: create, start a turn, propose a plan, approve it, judge, finish, cancel.

Like every board verb they take an open connection inside the caller's transaction. What a
goal should do next (and the text its planner and judge cards carry) is decided in
`kanban.goals`; this module only writes what it is told, checking each goal move.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from kanban import errors, plans, views
from kanban.board import _rows, choices, outbox, usage
from kanban.board.cards import add_card, move
from kanban.models import cards, goal_turns, goals
from kanban.states import (
    FINISHED,
    OPEN,
    CardRole,
    CardStatus,
    GoalStatus,
    check_goal_move,
)

G = GoalStatus
MAX_OBJECTIVE = 100_000


@dataclasses.dataclass(frozen=True, slots=True)
class RoleCard:
    """What a planner or judge card should say, decided by `kanban.goals`."""

    title: str
    body: str
    profile: str
    parents: tuple[int, ...] = ()


# ------------------------------------------------------------------------------- reads


def _goal_view(row: Row[Any]) -> views.GoalView:
    return views.GoalView(**{f: row._mapping[f] for f in views.GoalView.__dataclass_fields__})


def _goal_row(conn: Connection, goal_id: int) -> Row[Any]:
    row = conn.execute(sa.select(goals).where(goals.c.id == goal_id)).first()
    if row is None:
        raise errors.GoalNotFound(goal_id)
    return row


def get_goal(conn: Connection, goal_id: int) -> views.GoalView:
    return _goal_view(_goal_row(conn, goal_id))


def list_goals(
    conn: Connection, *, statuses: Collection[GoalStatus] | None = None
) -> list[views.GoalView]:
    query = sa.select(goals).order_by(goals.c.id)
    if statuses:
        query = query.where(goals.c.status.in_([s.value for s in statuses]))
    return [_goal_view(r) for r in conn.execute(query)]


def _turn_row(conn: Connection, goal_id: int, number: int) -> Row[Any]:
    row = conn.execute(
        sa.select(goal_turns).where(goal_turns.c.goal_id == goal_id, goal_turns.c.number == number)
    ).first()
    if row is None:
        raise errors.PlanError(f"goal {goal_id} has no turn {number}")
    return row


def _turn_view(row: Row[Any]) -> views.GoalTurnView:
    plan = row.plan
    verdict = None
    if row.verdict_done is not None:
        verdict = {"done": bool(row.verdict_done), "reason": row.verdict_reason or ""}
    return views.GoalTurnView(
        number=row.number,
        feedback=row.feedback,
        planner_card=row.planner_card_id,
        cards=tuple(c["card"] for c in plan["cards"]) if plan else (),
        plan=plan,
        proposed_at=row.proposed_at,
        approved_at=row.approved_at,
        judge_card=row.judge_card_id,
        verdict=verdict,
        judged_at=row.judged_at,
        created_at=row.created_at,
    )


def turns_of(conn: Connection, goal_id: int) -> list[views.GoalTurnView]:
    rows = conn.execute(
        sa.select(goal_turns).where(goal_turns.c.goal_id == goal_id).order_by(goal_turns.c.number)
    )
    return [_turn_view(r) for r in rows]


def cards_of(conn: Connection, goal_id: int, *, work_only: bool = False) -> list[views.CardView]:
    """The goal's cards, oldest first; `work_only` leaves out its planner and judge cards."""
    query = sa.select(cards).where(cards.c.goal_id == goal_id).order_by(cards.c.id)
    if work_only:
        query = query.where(cards.c.role.is_(None))
    return _rows.card_views(conn, conn.execute(query).all())


def goal_detail(conn: Connection, goal_id: int) -> views.GoalDetail:
    goal = get_goal(conn, goal_id)
    every = cards_of(conn, goal_id)
    progress = Counter(c.status for c in every if c.role is None)
    progress["total"] = sum(progress.values())
    return views.GoalDetail(
        goal=goal,
        turns=tuple(turns_of(conn, goal_id)),
        cards=tuple(every),
        progress=dict(progress),
        spend=usage.goal_spend(conn, goal_id),
    )


def finished_working(conn: Connection) -> list[int]:
    """Goals being worked none of whose work cards is still open: time to judge them."""
    open_work = (
        sa.exists()
        .where(cards.c.goal_id == goals.c.id, cards.c.role.is_(None))
        .where(cards.c.status.in_([s.value for s in OPEN]))
    )
    rows = conn.execute(sa.select(goals.c.id).where(goals.c.status == G.WORKING.value, ~open_work))
    return [r[0] for r in rows]


def stalled(conn: Connection) -> list[tuple[int, int, str, str]]:
    """(goal, card, card status, role) for goals whose planner or judge card finished without
    delivering: a person moved it, or it was cancelled. Such a goal cannot go on by itself."""
    found = []
    for status, column, role in (
        (G.PLANNING, goal_turns.c.planner_card_id, CardRole.PLANNER),
        (G.JUDGING, goal_turns.c.judge_card_id, CardRole.JUDGE),
    ):
        rows = conn.execute(
            sa.select(goals.c.id, cards.c.id, cards.c.status)
            .join(
                goal_turns,
                sa.and_(goal_turns.c.goal_id == goals.c.id, goal_turns.c.number == goals.c.turn),
            )
            .join(cards, cards.c.id == column)
            .where(goals.c.status == status.value)
            .where(cards.c.status.in_([s.value for s in FINISHED]))
        )
        found += [(g, c, s, role.value) for g, c, s in rows]
    return found


# ------------------------------------------------------------------------------ writes


def create(
    conn: Connection,
    *,
    objective: str,
    planner: str | None,
    judge: str | None,
    max_turns: int,
    auto: bool,
    now: dt.datetime,
    actor: str | None = None,
    max_cost_usd: float | None = None,
) -> views.GoalView:
    """A new goal in `planning` at turn 0; `start_turn` begins its first turn.
    `max_cost_usd` is its budget: what all of its cards' runs may cost together."""
    objective = _rows.check_text(objective.strip(), what="objective", limit=MAX_OBJECTIVE)
    if not objective:
        raise errors.UsageError('a goal needs an objective: kanban goal add "what to achieve"')
    if not 1 <= max_turns <= 100:
        raise errors.UsageError(f"max turns {max_turns} is out of range (1 to 100)")
    max_cost_usd = usage.check_cost(max_cost_usd, what="goal budget")
    goal_id = conn.execute(
        sa.insert(goals)
        .values(
            objective=objective,
            status=G.PLANNING.value,
            planner=planner,
            judge=judge,
            max_turns=max_turns,
            max_cost_usd=max_cost_usd,
            auto=auto,
            turn=0,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
        .returning(goals.c.id)
    ).scalar_one()
    return get_goal(conn, goal_id)


def _set_status(
    conn: Connection, goal: Row[Any], target: GoalStatus, *, now: dt.datetime, **values: Any
) -> None:
    check_goal_move(goal.id, goal.status, target)
    if target in (G.DONE, G.BLOCKED, G.CANCELLED):
        values.setdefault("ended_at", now)
    conn.execute(
        sa.update(goals)
        .where(goals.c.id == goal.id)
        .values(status=target.value, updated_at=now, **values)
    )
    outbox.capture_goal(
        conn,
        goal_id=goal.id,
        status=target.value,
        reason=values.get("reason", goal.reason),
        auto=bool(goal.auto),
        now=now,
    )


def _update_turn(conn: Connection, goal: Row[Any], **values: Any) -> None:
    """Write to the goal's current turn."""
    conn.execute(
        sa.update(goal_turns)
        .where(goal_turns.c.goal_id == goal.id, goal_turns.c.number == goal.turn)
        .values(**values)
    )


def start_turn(
    conn: Connection,
    *,
    goal_id: int,
    now: dt.datetime,
    feedback: str | None = None,
    planner: RoleCard | None = None,
    actor: str | None = None,
) -> views.GoalTurnView:
    """The goal's next turn, in `planning`, with its planner card (ready) if one is given."""
    goal = _goal_row(conn, goal_id)
    if goal.turn > 0:
        _set_status(conn, goal, G.PLANNING, now=now)
    number = goal.turn + 1
    card_id = None
    if planner is not None:
        card, _ = add_card(
            conn,
            title=planner.title,
            body=planner.body,
            profile=planner.profile,
            parents=planner.parents,
            now=now,
            actor=actor,
            goal_id=goal_id,
            role=CardRole.PLANNER,
        )
        card_id = card.id
    conn.execute(
        sa.insert(goal_turns).values(
            goal_id=goal_id,
            number=number,
            feedback=feedback,
            planner_card_id=card_id,
            created_at=now,
        )
    )
    conn.execute(sa.update(goals).where(goals.c.id == goal_id).values(turn=number, updated_at=now))
    return _turn_view(_turn_row(conn, goal_id, number))


def propose(
    conn: Connection,
    *,
    goal_id: int,
    plan: plans.Plan,
    now: dt.datetime,
    roots_after: Sequence[int] = (),
    actor: str | None = None,
) -> list[views.CardView]:
    """Make the plan's cards for the current turn, in `triage` until the goal is approved
    (at once when the goal is `--auto`). Cards with no `after` wait for `roots_after`."""
    goal = _goal_row(conn, goal_id)
    _set_status(conn, goal, G.PROPOSED, now=now)
    made: dict[str, int] = {}
    for item in plan.cards:  # parents first
        parents = [made[k] for k in item.after] if item.after else list(roots_after)
        card, _ = add_card(
            conn,
            title=item.title,
            body=item.body,
            profile=item.profile,
            parents=parents,
            paths=item.paths or None,
            triage=True,
            now=now,
            actor=actor,
            goal_id=goal_id,
        )
        if item.model is not None or item.args or item.env:
            choices.set_agent_choices(
                conn,
                card_id=card.id,
                model=item.model,
                args=item.args,
                env=dict(item.env),
                now=now,
                actor=actor,
            )
        made[item.key] = card.id
    stored = {"cards": [{**c.to_json(), "card": made[c.key]} for c in plan.cards]}
    _update_turn(conn, goal, plan=stored, proposed_at=now)
    if goal.auto:
        approve(conn, goal_id=goal_id, now=now, actor=actor)
    return [_rows.get_card(conn, made[c.key]) for c in plan.cards]


def approve(
    conn: Connection, *, goal_id: int, now: dt.datetime, actor: str | None = None
) -> list[views.CardView]:
    """Accept the current turn's proposal: its cards leave `triage` for `ready` (or `todo`
    while a parent is unfinished)."""
    goal = _goal_row(conn, goal_id)
    if goal.status != G.PROPOSED:
        raise errors.InvalidTransition(
            f"goal {goal_id} is {goal.status}; only a proposed plan can be approved"
        )
    _set_status(conn, goal, G.WORKING, now=now)
    turn = _turn_view(_turn_row(conn, goal_id, goal.turn))
    moved = []
    for card_id in turn.cards:
        if _rows.card_row(conn, card_id).status == CardStatus.TRIAGE:
            moved.append(move(conn, card_id=card_id, to=CardStatus.READY, now=now, actor=actor))
    _update_turn(conn, goal, approved_at=now)
    return moved


def begin_judging(
    conn: Connection, *, goal_id: int, judge: RoleCard, now: dt.datetime
) -> views.CardView | None:
    """working -> judging with its judge card; None if another dispatcher got there first."""
    won = conn.execute(
        sa.update(goals)
        .where(goals.c.id == goal_id, goals.c.status == G.WORKING.value)
        .values(status=G.JUDGING.value, updated_at=now)
    ).rowcount
    if not won:
        return None
    goal = _goal_row(conn, goal_id)
    card, _ = add_card(
        conn,
        title=judge.title,
        body=judge.body,
        profile=judge.profile,
        parents=judge.parents,
        now=now,
        goal_id=goal_id,
        role=CardRole.JUDGE,
    )
    _update_turn(conn, goal, judge_card_id=card.id)
    return card


def record_verdict(
    conn: Connection, *, goal_id: int, verdict: plans.Verdict, now: dt.datetime
) -> views.GoalView:
    """Keep the judge's verdict on the current turn; a `done` verdict ends the goal done."""
    goal = _goal_row(conn, goal_id)
    if goal.status != G.JUDGING:
        raise errors.InvalidTransition(f"goal {goal_id} is {goal.status}, not waiting for a judge")
    _update_turn(
        conn, goal, verdict_done=verdict.done, verdict_reason=verdict.reason, judged_at=now
    )
    conn.execute(sa.update(goals).where(goals.c.id == goal_id).values(reason=verdict.reason))
    if verdict.done:
        _set_status(conn, goal, G.DONE, now=now)
    return get_goal(conn, goal_id)


def finish(
    conn: Connection, *, goal_id: int, status: GoalStatus, reason: str, now: dt.datetime
) -> views.GoalView:
    """End a goal `done` (no judge: its cards are done) or `blocked` for a person."""
    _set_status(conn, _goal_row(conn, goal_id), status, now=now, reason=reason)
    return get_goal(conn, goal_id)


def cancel(
    conn: Connection,
    *,
    goal_id: int,
    now: dt.datetime,
    reason: str | None = None,
    actor: str | None = None,
) -> views.GoalView:
    """Cancel the goal and every open card of it (running agents lose their leases)."""
    goal = _goal_row(conn, goal_id)
    why = reason or f"goal {goal_id} was cancelled"
    _set_status(conn, goal, G.CANCELLED, now=now, reason=why)
    for card in cards_of(conn, goal_id):
        if card.status in OPEN:
            move(conn, card_id=card.id, to=CardStatus.CANCELLED, now=now, actor=actor, reason=why)
    return get_goal(conn, goal_id)
