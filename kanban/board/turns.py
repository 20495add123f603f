"""A goal's turn moves on: a planner's plan proposed, a judge's verdict applied, a new turn.

`board.end_run` calls `deliver` when a planner's or judge's run ends `done`, in the same
transaction, with what `kanban.goals.read_delivery` read and checked before it began (no
file is read here). A delivery that is refused raises `PlanError`; `end_run` then ends the
run `failed` with the reason (or refuses the report), and nothing of it exists.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from sqlalchemy.engine import Connection

from kanban import briefs, errors, plans, views
from kanban.board import goals, usage
from kanban.states import CardRole, GoalStatus

G = GoalStatus
WHAT = {CardRole.PLANNER: "plan", CardRole.JUDGE: "verdict"}


def deliver(
    conn: Connection,
    *,
    card: views.CardView,
    delivery: views.Delivery | None,
    now: dt.datetime,
) -> None:
    """Apply what the planner or judge `card` delivered to its goal."""
    assert card.goal_id is not None
    assert card.role is not None
    role = CardRole(card.role)
    what = WHAT[role]
    if delivery is None:
        raise errors.PlanError(f"{what} refused: no {what} was read for this run")
    if delivery.refused is not None:
        raise errors.PlanError(delivery.refused)
    try:
        if role is CardRole.PLANNER:
            if delivery.plan is None:
                raise errors.PlanError(f"the agent delivered no {what}")
            propose(conn, goal_id=card.goal_id, plan=delivery.plan, now=now)
        else:
            if delivery.verdict is None:
                raise errors.PlanError(f"the agent delivered no {what}")
            judged(
                conn,
                goal_id=card.goal_id,
                judge_card=card.id,
                verdict=delivery.verdict,
                profile_lines=delivery.profile_lines,
                now=now,
            )
    except errors.KanbanError as exc:
        raise errors.PlanError(f"{what} refused: {exc.message}") from exc


def propose(conn: Connection, *, goal_id: int, plan: plans.Plan, now: dt.datetime) -> None:
    """The plan's cards; the first cards of a later turn start from the last judge's branch."""
    turns = goals.turns_of(conn, goal_id)
    previous = turns[-2].judge_card if len(turns) > 1 else None
    roots = (previous,) if previous is not None else ()
    goals.propose(conn, goal_id=goal_id, plan=plan, now=now, roots_after=roots)


def judged(
    conn: Connection,
    *,
    goal_id: int,
    judge_card: int,
    verdict: plans.Verdict,
    profile_lines: Collection[str],
    now: dt.datetime,
) -> None:
    """Done ends the goal; not done starts the next turn while the budgets allow."""
    goal = goals.record_verdict(conn, goal_id=goal_id, verdict=verdict, now=now)
    if verdict.done:
        return
    spent = usage.goal_spend(conn, goal_id).cost_usd
    if goal.turn >= goal.max_turns:
        reason = (
            f"the turn budget is spent ({goal.turn} of {goal.max_turns} turns) and the judge "
            f"says it is not done: {verdict.reason}"
        )
    elif goal.max_cost_usd is not None and spent >= goal.max_cost_usd:
        reason = (
            f"the cost budget is spent ({views.usd(spent)} of "
            f"{views.usd(goal.max_cost_usd)}) and the judge says it is not done: "
            f"{verdict.reason}"
        )
    elif goal.planner is None:
        reason = f"the judge says it is not done and the goal has no planner: {verdict.reason}"
    else:
        next_turn(
            conn,
            goal,
            feedback=verdict.reason,
            parents=(judge_card,),
            profile_lines=profile_lines,
            now=now,
        )
        return
    goals.finish(conn, goal_id=goal_id, status=G.BLOCKED, reason=reason, now=now)


def next_turn(
    conn: Connection,
    goal: views.GoalView,
    *,
    feedback: str | None,
    parents: tuple[int, ...],
    profile_lines: Collection[str],
    now: dt.datetime,
    actor: str | None = None,
) -> None:
    """Start the goal's next turn with a planner card (its text lists `profile_lines`)."""
    assert goal.planner is not None
    number = goal.turn + 1
    so_far = goals.cards_of(conn, goal.id, work_only=True)
    planner = goals.RoleCard(
        title=briefs.title("Plan" if number == 1 else f"Plan turn {number}", goal.objective),
        body=briefs.planner_body(goal, number, feedback, so_far, list(profile_lines)),
        profile=goal.planner,
        parents=parents,
    )
    goals.start_turn(
        conn, goal_id=goal.id, now=now, feedback=feedback, planner=planner, actor=actor
    )
