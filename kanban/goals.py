"""Goals: an objective that a planner breaks into cards and a judge checks, turn by turn.

    goal add -> turn 1: planner card (ready) -> its run ends: plan read, checked, proposed
    -> `goal approve` (or --auto) -> cards worked -> all finished: judge card (the tick hook)
    -> its run ends: verdict read -> done | next turn with the judge's reason | blocked

A planner card's agent writes its plan to $KANBAN_PLAN_FILE and a judge's writes its
verdict to $KANBAN_VERDICT_FILE (files in the run's directory, outside the worktree). When
such a run ends `done`, `end_run` reads the file and applies it in the same transaction; a
file that does not validate ends the run `failed` with the reason instead, and nothing of it
exists. Writes go through the board verbs (`kanban.board.goals`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from kanban import board, clock, errors, plans, profiles, settings, views
from kanban.board.goals import RoleCard
from kanban.states import CardRole, CardStatus, GoalStatus, RunOutcome

if TYPE_CHECKING:
    from kanban.api import Board

logger = logging.getLogger(__name__)

G = GoalStatus
DEFAULT_MAX_TURNS = 20
MAX_FILE = 5 * 1024 * 1024
ROLE_FILES = {
    CardRole.PLANNER: ("KANBAN_PLAN_FILE", "plan.json", "plan"),
    CardRole.JUDGE: ("KANBAN_VERDICT_FILE", "verdict.json", "verdict"),
}


# ------------------------------------------------------------------- files of a run


def run_dir(state_dir: Path, run_id: int) -> Path:
    """Where a run's prompt, plan and verdict live (outside the worktree, never committed)."""
    return state_dir / "runs" / str(run_id)


def agent_vars(card: views.CardView, directory: Path) -> dict[str, str]:
    """The goal variables for a card's agent: KANBAN_GOAL_ID, and KANBAN_PLAN_FILE or
    KANBAN_VERDICT_FILE for a planner or judge card."""
    found: dict[str, str] = {}
    if card.goal_id is not None:
        found["KANBAN_GOAL_ID"] = str(card.goal_id)
    if card.role is not None:
        variable, name, _ = ROLE_FILES[CardRole(card.role)]
        found[variable] = str(directory / name)
    return found


def check_models(plan: plans.Plan, repo: Path | None) -> plans.Plan:
    """A plan's per-card model, arguments and variables, refused (PlanError) where the card's
    profile does not allow them."""
    for card in plan.cards:
        if card.model is None and not card.args and not card.env:
            continue
        try:
            profiles.load(card.profile, repo=repo).check_card_choices(
                model=card.model, args=card.args, env=dict(card.env)
            )
        except errors.ProfileError as exc:
            raise errors.PlanError(f"card {card.key!r}: {exc.message}") from None
    return plan


def known_profiles(repo: Path | None) -> list[str]:
    return sorted(profiles.load_all(repo=repo)[0])


def end_run(
    conn: Connection,
    *,
    config: settings.Settings,
    card_id: int,
    token: str,
    outcome: RunOutcome,
    now: dt.datetime,
    refuse_bad_output: bool = False,
    **kwargs: Any,
) -> views.RunEnd:
    """`board.end_run`, plus: a planner's or judge's run that ends `done` delivers its plan or
    verdict in the same transaction. One that does not validate ends the run `failed` with
    the reason (or, with `refuse_bad_output`, raises PlanError and changes nothing, so an
    agent reporting by itself can fix its file while it still holds the lease)."""
    card = board.get_card(conn, card_id)
    if card.role is None or card.goal_id is None or outcome is not RunOutcome.DONE:
        return board.end_run(conn, card_id=card_id, token=token, outcome=outcome, now=now, **kwargs)
    live = [r for r in board.runs_of(conn, card_id) if r.live]
    try:
        with conn.begin_nested():
            ended = board.end_run(
                conn, card_id=card_id, token=token, outcome=outcome, now=now, **kwargs
            )
            path = run_dir(config.state_dir, live[0].id) / ROLE_FILES[CardRole(card.role)][1]
            _deliver(conn, config, card, path, now=now)
            return ended
    except errors.LeaseLost:
        raise
    except errors.KanbanError as exc:
        if refuse_bad_output:
            raise errors.PlanError(
                f"{exc.message}; fix the file and report again (`kanban complete`)"
            ) from exc
        logger.warning("card %s: %s", card_id, exc.message)
        kwargs.update(summary=None, error=exc.message)
        return board.end_run(
            conn, card_id=card_id, token=token, outcome=RunOutcome.FAILED, now=now, **kwargs
        )


def _deliver(
    conn: Connection,
    config: settings.Settings,
    card: views.CardView,
    path: Path,
    *,
    now: dt.datetime,
) -> None:
    assert card.goal_id is not None
    assert card.role is not None
    role = CardRole(card.role)
    variable, _, what = ROLE_FILES[role]
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE + 1)
    except FileNotFoundError:
        raise errors.PlanError(
            f"{what} refused: the agent wrote no {what} to ${variable} ({path})"
        ) from None
    if len(raw) > MAX_FILE:
        raise errors.PlanError(f"{what} refused: {path} is larger than {MAX_FILE:,} bytes")
    try:
        text = raw.decode()
        if role is CardRole.PLANNER:
            plan = check_models(
                plans.parse_plan(text, known_profiles=known_profiles(config.repo)), config.repo
            )
            _propose(conn, goal_id=card.goal_id, plan=plan, now=now)
        else:
            verdict = plans.parse_verdict(text)
            _judged(
                conn, config, goal_id=card.goal_id, judge_card=card.id, verdict=verdict, now=now
            )
    except UnicodeDecodeError:
        raise errors.PlanError(f"{what} refused: {path} is not UTF-8 text") from None
    except errors.KanbanError as exc:
        raise errors.PlanError(f"{what} refused: {exc.message}") from exc


def _propose(conn: Connection, *, goal_id: int, plan: plans.Plan, now: dt.datetime) -> None:
    """The plan's cards; the first cards of a later turn start from the last judge's branch."""
    turns = board.goals.turns_of(conn, goal_id)
    previous = turns[-2].judge_card if len(turns) > 1 else None
    roots = (previous,) if previous is not None else ()
    board.goals.propose(conn, goal_id=goal_id, plan=plan, now=now, roots_after=roots)


def _judged(
    conn: Connection,
    config: settings.Settings,
    *,
    goal_id: int,
    judge_card: int,
    verdict: plans.Verdict,
    now: dt.datetime,
) -> None:
    goal = board.goals.record_verdict(conn, goal_id=goal_id, verdict=verdict, now=now)
    if verdict.done:
        return
    spent = board.goal_spend(conn, goal_id).cost_usd
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
        _next_turn(conn, config, goal, feedback=verdict.reason, parents=(judge_card,), now=now)
        return
    board.goals.finish(conn, goal_id=goal_id, status=G.BLOCKED, reason=reason, now=now)


def _next_turn(
    conn: Connection,
    config: settings.Settings,
    goal: views.GoalView,
    *,
    feedback: str | None,
    parents: tuple[int, ...],
    now: dt.datetime,
    actor: str | None = None,
) -> None:
    assert goal.planner is not None
    number = goal.turn + 1
    so_far = board.goals.cards_of(conn, goal.id, work_only=True)
    planner = RoleCard(
        title=_title("Plan" if number == 1 else f"Plan turn {number}", goal.objective),
        body=planner_body(goal, number, feedback, so_far, _profile_lines(config.repo)),
        profile=goal.planner,
        parents=parents,
    )
    board.goals.start_turn(
        conn, goal_id=goal.id, now=now, feedback=feedback, planner=planner, actor=actor
    )


# --------------------------------------------------------------------- card texts


def _title(prefix: str, objective: str) -> str:
    first = next((ln.strip() for ln in objective.splitlines() if ln.strip()), objective)
    text = f"{prefix}: {first}"
    return text if len(text) <= 200 else text[:199] + "…"


def _profile_lines(repo: Path | None) -> list[str]:
    good, _ = profiles.load_all(repo=repo)
    return [
        f"- `{name}`: {p.description or '(no description)'}"
        + (" (takes a `model`)" if p.model_args else "")
        for name, p in sorted(good.items())
    ]


def _card_lines(cards: Collection[views.CardView]) -> list[str]:
    lines = []
    for card in cards:
        line = f"- Card {card.id} [{card.status}] {card.title}"
        if card.branch:
            line += f" (branch `{card.branch}`)"
        lines.append(line)
        if card.summary:
            lines += ["  " + ln for ln in card.summary.strip().splitlines()]
    return lines


def planner_body(
    goal: views.GoalView,
    turn: int,
    feedback: str | None,
    cards: Collection[views.CardView],
    profile_lines: list[str],
) -> str:
    parts = [
        f"You are planning goal {goal.id}, turn {turn} of at most {goal.max_turns}. Do not do "
        "the work yourself: break the objective into cards that other agents will work, and "
        "write the plan as JSON to the file named by $KANBAN_PLAN_FILE.",
        "## Objective\n\n" + goal.objective,
    ]
    if feedback:
        parts.append(f"## Why the last turn was judged not done\n\n{feedback}")
    if cards:
        parts.append("## Cards of this goal so far\n\n" + "\n".join(_card_lines(cards)))
    parts.append("## Profiles you can give a card\n\n" + "\n".join(profile_lines or ["- none"]))
    parts.append(
        "## The plan\n\nWrite exactly this shape to $KANBAN_PLAN_FILE:\n\n```json\n"
        + plans.FORMAT
        + "\n```\n\n"
        "- `key`: short and unique within the plan; `after` lists keys of this plan that must "
        "be done first (no cycles).\n"
        "- `title`: one line; `body`: everything the card's agent needs to know.\n"
        "- `profile`: one of the profiles above; `paths`: optional globs of the files it will "
        "touch (cards whose paths overlap never run at once).\n"
        "- `model`: optional, for a profile marked as taking one: the model that card's "
        "agent runs with; `args` and `env`: optional extra options and variables, only those "
        "the profile allows.\n"
        "- Then exit 0 (or run `kanban complete`). A plan that does not validate fails this "
        "attempt with the reason, and nothing of it is created."
    )
    return "\n\n".join(parts)


def judge_body(goal: views.GoalView, cards: Collection[views.CardView]) -> str:
    return "\n\n".join(
        [
            f"You are judging goal {goal.id} after turn {goal.turn} of at most "
            f"{goal.max_turns}. Do not change anything: check whether the objective is met by "
            "the work below (your worktree holds it), and write your verdict as JSON to the "
            "file named by $KANBAN_VERDICT_FILE.",
            "## Objective\n\n" + goal.objective,
            "## The goal's cards\n\n" + "\n".join(_card_lines(cards) or ["- none"]),
            "## The verdict\n\nWrite exactly this shape to $KANBAN_VERDICT_FILE, then exit 0:\n\n"
            '```json\n{"done": false, "reason": "what is missing or wrong, for the next plan"}'
            "\n```\n\n"
            '`"done": true` ends the goal. Not done starts another planning turn that reads '
            "your reason, until the goal's turns are spent.",
        ]
    )


# ------------------------------------------------------------------ library functions


def create(
    conn: Connection,
    config: settings.Settings,
    *,
    objective: str,
    planner: str | None,
    judge: str | None,
    plan: plans.Plan | None = None,
    max_turns: int = DEFAULT_MAX_TURNS,
    auto: bool = False,
    now: dt.datetime,
    actor: str | None = None,
    max_cost_usd: float | None = None,
) -> views.GoalView:
    """A goal with its first turn: a planner card, or the given plan proposed at once."""
    if planner is None and plan is None:
        raise errors.UsageError(
            "a goal needs a planner (--planner PROFILE) or a plan (--plan FILE)"
        )
    for name in (planner, judge):
        if name is not None:
            profiles.require(name, repo=config.repo)
    goal = board.goals.create(
        conn,
        objective=objective,
        planner=planner,
        judge=judge,
        max_turns=max_turns,
        auto=auto,
        now=now,
        actor=actor,
        max_cost_usd=max_cost_usd,
    )
    if plan is None:
        _next_turn(conn, config, goal, feedback=None, parents=(), now=now, actor=actor)
    else:
        board.goals.start_turn(conn, goal_id=goal.id, now=now, actor=actor)
        board.goals.propose(conn, goal_id=goal.id, plan=plan, now=now, actor=actor)
    return board.goals.get_goal(conn, goal.id)


def read_plan(path: Path, *, repo: Path | None) -> plans.Plan:
    """A hand-written plan file, checked like a planner's."""
    try:
        with path.open("rb") as fh:  # bounded: a plan of /dev/zero must not fill memory
            raw = fh.read(MAX_FILE + 1)
        if len(raw) > MAX_FILE:
            raise errors.PlanError(
                f"plan {path} refused: it is larger than {MAX_FILE:,} bytes; a plan is a short "
                "JSON list of cards"
            )
        text = raw.decode()
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.PlanError(f"cannot read the plan {path}: {exc}") from None
    try:
        return check_models(plans.parse_plan(text, known_profiles=known_profiles(repo)), repo)
    except errors.PlanError as exc:
        raise errors.PlanError(f"plan {path} refused: {exc.message}") from None


def add(
    board_: Board,
    objective: str,
    *,
    planner: str | None = None,
    plan: plans.Plan | None = None,
    judge: str | None = None,
    max_turns: int = DEFAULT_MAX_TURNS,
    auto: bool = False,
    max_cost_usd: float | None = None,
) -> views.GoalView:
    return board_.write(
        lambda c: create(
            c,
            board_.settings,
            objective=objective,
            planner=planner,
            judge=judge,
            plan=plan,
            max_turns=max_turns,
            auto=auto,
            now=clock.now(),
            actor=board_.actor,
            max_cost_usd=max_cost_usd,
        ),
        wake_dispatcher=True,
    )


def show(board_: Board, goal_id: int) -> views.GoalDetail:
    return board_.read(lambda c: board.goals.goal_detail(c, goal_id))


def ls(board_: Board, statuses: Collection[GoalStatus] | None = None) -> list[views.GoalView]:
    return board_.read(lambda c: board.goals.list_goals(c, statuses=statuses))


def approve(board_: Board, goal_id: int) -> list[views.CardView]:
    return board_.write(
        lambda c: board.goals.approve(c, goal_id=goal_id, now=clock.now(), actor=board_.actor),
        wake_dispatcher=True,
    )


def cancel(board_: Board, goal_id: int, *, reason: str | None = None) -> views.GoalView:
    return board_.write(
        lambda c: board.goals.cancel(
            c, goal_id=goal_id, now=clock.now(), reason=reason, actor=board_.actor
        ),
        wake_dispatcher=True,
    )


def parse_status(value: str) -> GoalStatus:
    try:
        return GoalStatus(value.lower())
    except ValueError:
        known = ", ".join(s.value for s in GoalStatus)
        raise errors.UsageError(f"unknown goal status {value!r}; use one of: {known}") from None


# ---------------------------------------------------------------------- the tick hook


def tick(board_: Board, now: dt.datetime) -> Mapping[str, Any]:
    """Move goals along (a dispatcher tick hook): judge goals whose cards are all finished
    (or end them without a judge), and block goals whose planner or judge card finished
    without delivering."""
    if not due(board_):  # two cheap reads; the write lock only when there is work
        return {}
    return board_.write(lambda c: _advance(c, board_.settings, now))


def due(board_: Board) -> bool:
    """Would the next tick move a goal along? (`dispatch --drain` waits for that tick.)"""

    def read(conn: Connection) -> bool:
        return bool(board.goals.finished_working(conn) or board.goals.stalled(conn))

    return board_.read(read)


def _advance(conn: Connection, config: settings.Settings, now: dt.datetime) -> dict[str, Any]:
    report: dict[str, list[int]] = {"judging": [], "done": [], "blocked": []}
    for goal_id in board.goals.finished_working(conn):
        goal = board.goals.get_goal(conn, goal_id)
        work = board.goals.cards_of(conn, goal_id, work_only=True)
        if goal.judge is not None:
            judge = RoleCard(
                title=_title(
                    "Judge" if goal.turn == 1 else f"Judge turn {goal.turn}", goal.objective
                ),
                body=judge_body(goal, work),
                profile=goal.judge,
                parents=_judge_parents(conn, goal),
            )
            if board.goals.begin_judging(conn, goal_id=goal_id, judge=judge, now=now):
                report["judging"].append(goal_id)
            continue
        unfinished = [c.id for c in work if c.status != CardStatus.DONE]
        if unfinished:
            listed = ", ".join(map(str, unfinished[:10]))
            reason = f"cards {listed} ended without being done, and the goal has no judge"
            board.goals.finish(conn, goal_id=goal_id, status=G.BLOCKED, reason=reason, now=now)
            report["blocked"].append(goal_id)
        else:
            reason = f"all {len(work)} cards are done"
            board.goals.finish(conn, goal_id=goal_id, status=G.DONE, reason=reason, now=now)
            report["done"].append(goal_id)
    for goal_id, card_id, status, role in board.goals.stalled(conn):
        what = "plan" if role == CardRole.PLANNER else "verdict"
        reason = f"its {role} card {card_id} is {status} and left no {what}"
        board.goals.finish(conn, goal_id=goal_id, status=G.BLOCKED, reason=reason, now=now)
        report["blocked"].append(goal_id)
    return {k: v for k, v in report.items() if v}


def _judge_parents(conn: Connection, goal: views.GoalView) -> tuple[int, ...]:
    """The judge starts from the turn's finished work: its done cards that no other card of
    the turn waits for (their branches hold everything before them)."""
    turn = board.goals.turns_of(conn, goal.id)[-1]
    ids = set(turn.cards)
    turn_cards = [board.get_card(conn, i) for i in sorted(ids)]
    waited_for = {p for c in turn_cards for p in c.parents if p in ids}
    return tuple(c.id for c in turn_cards if c.status == CardStatus.DONE and c.id not in waited_for)
