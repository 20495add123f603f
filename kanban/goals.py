"""Goals: an objective that a planner breaks into cards and a judge checks, turn by turn.

    goal add -> turn 1: planner card (ready) -> its run ends: plan read, checked, proposed
    -> `goal approve` (or --auto) -> cards worked -> all finished: judge card (a tick step)
    -> its run ends: verdict read -> done | next turn with the judge's reason | blocked

A planner card's agent writes its plan to $KANBAN_PLAN_FILE and a judge's writes its
verdict to $KANBAN_VERDICT_FILE (files in the run's directory, outside the worktree). Before
such a run is ended, `read_delivery` reads and checks the file (and every profile file it
needs) outside any transaction; `board.end_run` then applies it in the run's own transaction.
A file that does not validate ends the run `failed` with the reason, and nothing of it exists.

Reach goals from a board as `board.goals` (`Goals`): `board.goals.add("objective", ...)`,
`.show(id)`, `.ls()`, `.approve(id)`, `.cancel(id)`. The dispatcher's tick calls `advance`.
Writes go through the board verbs (`kanban.board.goals`, `kanban.board.turns`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from kanban import board, briefs, clock, db, errors, plans, profiles, settings, views
from kanban.board.goals import RoleCard
from kanban.board.turns import next_turn
from kanban.states import CardRole, CardStatus, GoalStatus, RunOutcome

logger = logging.getLogger(__name__)

G = GoalStatus
DEFAULT_MAX_TURNS = 20
MAX_FILE = 5 * 1024 * 1024
ROLE_FILES = {
    CardRole.PLANNER: ("KANBAN_PLAN_FILE", "plan.json", "plan"),
    CardRole.JUDGE: ("KANBAN_VERDICT_FILE", "verdict.json", "verdict"),
}
planner_body = briefs.planner_body
judge_body = briefs.judge_body


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


@dataclasses.dataclass(frozen=True, slots=True)
class Catalog:
    """The profiles a goal may use, read from disk before a transaction begins."""

    loadable: tuple[str, ...]  # those that load: what a goal and its plan may use
    broken: Mapping[str, str]  # name -> why its file does not load
    lines: tuple[str, ...]  # what a planner card lists

    def check(self, name: str) -> None:
        """Like `profiles.require`, from what was read: known here and loading cleanly."""
        profiles.check_name(name)
        usable = ", ".join(self.loadable) or "none"
        if name in self.broken:
            raise errors.ProfileError(
                f"profile {name!r} does not load: {self.broken[name]}; fix it "
                f"(`kanban profiles check {name}`) or choose another: {usable}"
            )
        if name not in self.loadable:
            known = ", ".join(sorted([*self.loadable, *self.broken])) or "none"
            raise errors.ProfileError(f"unknown profile {name!r}; known profiles: {known}")


def catalog(repo: Path | None) -> Catalog:
    good, bad = profiles.load_all(repo=repo)
    return Catalog(
        loadable=tuple(sorted(good)),
        broken=dict(bad),
        lines=briefs.profile_lines(good.values()),
    )


def known_profiles(repo: Path | None) -> list[str]:
    return list(catalog(repo).loadable)


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


def read_delivery(
    config: settings.Settings, card: views.CardView, run_id: int
) -> views.Delivery | None:
    """What a planner's or judge's run delivered: its file read and checked (outside any
    transaction). None for a card that is not a goal's planner or judge."""
    if card.role is None or card.goal_id is None:
        return None
    variable, name, what = ROLE_FILES[CardRole(card.role)]
    path = run_dir(config.state_dir, run_id) / name
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE + 1)
    except FileNotFoundError:
        return views.Delivery(
            refused=f"{what} refused: the agent wrote no {what} to ${variable} ({path})"
        )
    except OSError as exc:
        return views.Delivery(refused=f"{what} refused: cannot read {path}: {exc}")
    if len(raw) > MAX_FILE:
        return views.Delivery(refused=f"{what} refused: {path} is larger than {MAX_FILE:,} bytes")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return views.Delivery(refused=f"{what} refused: {path} is not UTF-8 text")
    known = catalog(config.repo)
    try:
        if card.role == CardRole.PLANNER:
            plan = plans.parse_plan(text, known_profiles=known.loadable)
            return views.Delivery(plan=check_models(plan, config.repo))
        return views.Delivery(verdict=plans.parse_verdict(text), profile_lines=known.lines)
    except errors.KanbanError as exc:
        return views.Delivery(refused=f"{what} refused: {exc.message}")


def with_delivery(
    config: settings.Settings, card: views.CardView, run_id: int, result: views.RunResult
) -> views.RunResult:
    """`result`, with what the agent delivered when it is a planner's or judge's `done`."""
    if result.outcome is not RunOutcome.DONE:
        return result
    delivery = read_delivery(config, card, run_id)
    return result if delivery is None else dataclasses.replace(result, delivery=delivery)


# ------------------------------------------------------------------ library functions


def create(
    conn: Connection,
    *,
    catalog: Catalog,
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
    """A goal with its first turn: a planner card, or the given plan proposed at once.
    The profiles were read before the transaction (`catalog`); no file is read here."""
    if planner is None and plan is None:
        raise errors.UsageError(
            "a goal needs a planner (--planner PROFILE) or a plan (--plan FILE)"
        )
    for name in (planner, judge):
        if name is not None:
            catalog.check(name)
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
        next_turn(
            conn,
            goal,
            feedback=None,
            parents=(),
            profile_lines=catalog.lines,
            now=now,
            actor=actor,
        )
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


def parse_status(value: str) -> GoalStatus:
    try:
        return GoalStatus(value.lower())
    except ValueError:
        known = ", ".join(s.value for s in GoalStatus)
        raise errors.UsageError(f"unknown goal status {value!r}; use one of: {known}") from None


@dataclasses.dataclass(frozen=True, slots=True)
class Advance:
    """What the tick's goal step did: goals now judging, done, or blocked."""

    judging: tuple[int, ...] = ()
    done: tuple[int, ...] = ()
    blocked: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) for k in ("judging", "done", "blocked") if (v := getattr(self, k))}

    def __bool__(self) -> bool:
        return bool(self.judging or self.done or self.blocked)


class Goals:
    """A board's goals (`board.goals`): each method is one transaction, like the card verbs.

    board.goals.add("objective", planner="claude-code", judge="claude-code")
    board.goals.approve(goal_id)
    """

    def __init__(self, tx: db.Transactions, config: settings.Settings) -> None:
        self.tx = tx
        self.settings = config

    def add(
        self,
        objective: str,
        *,
        planner: str | None = None,
        plan: plans.Plan | None = None,
        judge: str | None = None,
        max_turns: int = DEFAULT_MAX_TURNS,
        auto: bool = False,
        max_cost_usd: float | None = None,
    ) -> views.GoalView:
        for name in (planner, judge):  # profile files are read before the transaction
            if name is not None:
                profiles.require(name, repo=self.settings.repo)
        known = catalog(self.settings.repo)
        return self.tx.write(
            lambda c: create(
                c,
                catalog=known,
                objective=objective,
                planner=planner,
                judge=judge,
                plan=plan,
                max_turns=max_turns,
                auto=auto,
                now=clock.now(),
                actor=self.settings.actor,
                max_cost_usd=max_cost_usd,
            ),
            wake_dispatcher=True,
        )

    def read_plan(self, path: Path) -> plans.Plan:
        """A hand-written plan file (`goal add --plan FILE`), checked like a planner's."""
        return read_plan(path, repo=self.settings.repo)

    def show(self, goal_id: int) -> views.GoalDetail:
        return self.tx.read(lambda c: board.goals.goal_detail(c, goal_id))

    def ls(self, statuses: Collection[GoalStatus] | None = None) -> list[views.GoalView]:
        return self.tx.read(lambda c: board.goals.list_goals(c, statuses=statuses))

    def approve(self, goal_id: int) -> list[views.CardView]:
        return self.tx.write(
            lambda c: board.goals.approve(
                c, goal_id=goal_id, now=clock.now(), actor=self.settings.actor
            ),
            wake_dispatcher=True,
        )

    def cancel(self, goal_id: int, *, reason: str | None = None) -> views.GoalView:
        return self.tx.write(
            lambda c: board.goals.cancel(
                c, goal_id=goal_id, now=clock.now(), reason=reason, actor=self.settings.actor
            ),
            wake_dispatcher=True,
        )

    # ------------------------------------------------------------ the tick's goal step

    def due(self) -> bool:
        """Would the next tick move a goal along? (`dispatch --drain` waits for that tick.)"""

        def read(conn: Connection) -> bool:
            return bool(board.goals.finished_working(conn) or board.goals.stalled(conn))

        return self.tx.read(read)

    def advance(self, now: dt.datetime) -> Advance:
        """Move goals along (the dispatcher's goal step): judge goals whose cards are all
        finished (or end them without a judge), and block goals whose planner or judge card
        finished without delivering."""
        if not self.due():  # two cheap reads; the write lock only when there is work
            return Advance()
        return self.tx.write(lambda c: _advance(c, now))


def _advance(conn: Connection, now: dt.datetime) -> Advance:
    report: dict[str, list[int]] = {"judging": [], "done": [], "blocked": []}
    for goal_id in board.goals.finished_working(conn):
        goal = board.goals.get_goal(conn, goal_id)
        work = board.goals.cards_of(conn, goal_id, work_only=True)
        if goal.judge is not None:
            judge = RoleCard(
                title=briefs.title(
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
    return Advance(**{k: tuple(v) for k, v in report.items()})


def _judge_parents(conn: Connection, goal: views.GoalView) -> tuple[int, ...]:
    """The judge starts from the turn's finished work: its done cards that no other card of
    the turn waits for (their branches hold everything before them)."""
    turn = board.goals.turns_of(conn, goal.id)[-1]
    ids = set(turn.cards)
    turn_cards = [board.get_card(conn, i) for i in sorted(ids)]
    waited_for = {p for c in turn_cards for p in c.parents if p in ids}
    return tuple(c.id for c in turn_cards if c.status == CardStatus.DONE and c.id not in waited_for)
