"""Goal budgets: what a goal's runs cost, shown by `kanban goal show`; a goal judged not done
with its budget spent is blocked instead of planning another turn."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kanban
from kanban import board as verbs
from kanban import clock, errors, goals, views
from kanban.states import RunOutcome
from kanban.testing import board_in


@pytest.fixture
def board(repo: Path, repo_db: str) -> Iterator[kanban.Board]:
    b = board_in(repo, db=repo_db)
    yield b
    b.close()


def finish(board: kanban.Board, card_id: int, *, cost: float, file: str | None = None) -> None:
    """Claim a card and end its run done with `cost`, as its supervisor would (writing the
    planner's plan or the judge's verdict first, if given)."""
    claim = board.claim(card_id=card_id)
    assert claim is not None, f"card {card_id} is not ready"
    card = board.get(card_id)
    if file is not None:
        env = goals.agent_vars(card, goals.run_dir(board.settings.state_dir, claim.run_id))
        path = Path(env["KANBAN_PLAN_FILE" if card.role == "planner" else "KANBAN_VERDICT_FILE"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(file)
    result = views.RunResult(
        RunOutcome.DONE, summary="finished", cost_usd=cost, tokens_in=100, tokens_out=10
    )
    result = goals.with_delivery(board.settings, card, claim.run_id, result)  # before the write
    board.tx.write(
        lambda c: verbs.end_run(
            c,
            card_id=card_id,
            token=claim.token,
            result=result,
            now=clock.now(),
            backoff=board.backoff,
        )
    )


PLAN = json.dumps({"cards": [{"key": "a", "title": "Do a", "profile": "demo"}]})


def test_a_goal_over_its_budget_is_blocked_instead_of_planning_another_turn(
    board: kanban.Board,
) -> None:
    goal = board.goals.add("Ship it", planner="demo", judge="demo", auto=True, max_cost_usd=0.1)
    assert goal.max_cost_usd == 0.1
    finish(board, board.goals.show(goal.id).turns[0].planner_card or 0, cost=0.04, file=PLAN)
    (work,) = board.goals.show(goal.id).turns[0].cards
    finish(board, work, cost=0.05)
    board.goals.advance(clock.now())
    judge = board.goals.show(goal.id).turns[0].judge_card or 0
    finish(board, judge, cost=0.02, file='{"done": false, "reason": "no tests"}')

    detail = board.goals.show(goal.id)
    assert detail.goal.status == "blocked"
    assert detail.goal.reason == (
        "the cost budget is spent ($0.11 of $0.10) and the judge says it is not done: no tests"
    )
    assert (detail.spend.runs, detail.spend.cost_usd) == (3, pytest.approx(0.11))
    assert len(detail.turns) == 1  # no second turn was planned


def test_a_goal_under_its_budget_plans_the_next_turn(board: kanban.Board) -> None:
    goal = board.goals.add("Ship it", planner="demo", judge="demo", auto=True, max_cost_usd=5)
    finish(board, board.goals.show(goal.id).turns[0].planner_card or 0, cost=0.5, file=PLAN)
    finish(board, board.goals.show(goal.id).turns[0].cards[0], cost=0.5)
    board.goals.advance(clock.now())
    judge = board.goals.show(goal.id).turns[0].judge_card or 0
    finish(board, judge, cost=0.5, file='{"done": false, "reason": "no tests"}')
    detail = board.goals.show(goal.id)
    assert (detail.goal.status, detail.goal.turn) == ("planning", 2)


def test_goal_spend_counts_every_card_of_the_goal_and_nothing_else(board: kanban.Board) -> None:
    goal = board.goals.add("Ship it", planner="demo", auto=True)
    finish(board, board.goals.show(goal.id).turns[0].planner_card or 0, cost=0.25, file=PLAN)
    other = board.add("not in the goal")
    finish(board, other.id, cost=9.0)
    spent = board.tx.read(lambda c: verbs.goal_spend(c, goal.id))
    assert (spent.runs, spent.cost_usd, spent.tokens_in) == (1, 0.25, 100)


def test_goal_add_and_show_with_a_budget(cli: Any, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(PLAN)
    made = json.loads(
        cli.ok("goal", "add", "Release", "--plan", str(plan), "--max-cost", "20", "--json").stdout
    )
    assert made["max_cost_usd"] == 20.0
    shown = cli.ok("goal", "show", str(made["id"])).stdout
    assert "cost      $0.00 of $20.00 budget  (0 runs)" in shown
    data = json.loads(cli.ok("goal", "show", str(made["id"]), "--json").stdout)
    assert data["spend"]["cost_usd"] == 0.0
    result = cli("goal", "add", "x", "--plan", str(plan), "--max-cost", "-2")
    assert result.exit_code == 2


def test_a_bad_goal_budget_is_refused(board: kanban.Board) -> None:
    with pytest.raises(errors.UsageError, match="goal budget 0 is out of range"):
        board.goals.add("x", planner="demo", max_cost_usd=0)
    assert board.goals.ls() == []
