"""Goals in-process: plans proposed and approved, bad plans refused whole, judges' verdicts,
turn budgets. Runs are claimed and ended exactly as a supervisor ends them (goals.end_run);
the real processes are in test_goals_acceptance.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kanban
from kanban import board as verbs
from kanban import clock, errors, goals, views, why
from kanban.states import RunOutcome
from kanban.testing import board_in, snapshot


@pytest.fixture
def board(repo: Path, repo_db: str) -> Iterator[kanban.Board]:
    b = board_in(repo, db=repo_db)
    yield b
    b.close()


def _plan(*cards: tuple[str, list[str]]) -> str:
    return json.dumps(
        {"cards": [{"key": k, "title": f"Do {k}", "profile": "demo", "after": a} for k, a in cards]}
    )


def run_role(board: kanban.Board, card_id: int, content: str | None) -> views.RunEnd:
    """Claim a planner or judge card, write its file, and end the run as its supervisor does
    when the agent exits 0."""
    claim = board.claim(card_id=card_id)
    assert claim is not None, f"card {card_id} is not ready"
    card = board.get(card_id)
    assert card.role is not None
    directory = goals.run_dir(board.settings.state_dir, claim.run_id)
    env = goals.agent_vars(card, directory)
    path = Path(env["KANBAN_PLAN_FILE" if card.role == "planner" else "KANBAN_VERDICT_FILE"])
    if content is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    result = views.RunResult(RunOutcome.DONE, summary="agent finished")
    result = goals.with_delivery(board.settings, card, claim.run_id, result)  # before the write
    return board.tx.write(
        lambda c: verbs.end_run(
            c,
            card_id=card_id,
            token=claim.token,
            result=result,
            now=clock.now(),
            backoff=board.backoff,
        )
    )


def work(board: kanban.Board, card_id: int) -> None:
    claim = board.claim(card_id=card_id)
    assert claim is not None, f"card {card_id} is not ready"
    board.complete(card_id, token=claim.token, summary=f"card {card_id} worked")


def planner_of(board: kanban.Board, goal_id: int) -> int:
    turn = board.goals.show(goal_id).turns[-1]
    assert turn.planner_card is not None
    return turn.planner_card


def test_a_plan_is_proposed_in_triage_and_approval_releases_it_in_order(
    board: kanban.Board,
) -> None:
    goal = board.goals.add("Ship the parser", planner="demo")
    assert goal.status == "planning"
    planner = board.get(planner_of(board, goal.id))
    assert (planner.status, planner.role, planner.goal_id) == ("ready", "planner", goal.id)
    assert "Ship the parser" in planner.body and "$KANBAN_PLAN_FILE" in planner.body

    ended = run_role(board, planner.id, _plan(("tests", ["parser"]), ("parser", [])))
    assert ended.card_status == "done"
    detail = board.goals.show(goal.id)
    assert detail.goal.status == "proposed"
    parser, tests = (board.get(i) for i in detail.turns[0].cards)
    assert (parser.title, tests.title) == ("Do parser", "Do tests")
    assert (parser.status, tests.status) == ("triage", "triage")
    assert tests.parents == (parser.id,)
    assert "kanban goal approve" in why.explain(board, parser.id)[0]
    assert board.claim() is None  # a proposal never runs

    board.goals.approve(goal.id)
    assert (board.get(parser.id).status, board.get(tests.id).status) == ("ready", "todo")
    with pytest.raises(errors.InvalidTransition, match="only a proposed plan can be approved"):
        board.goals.approve(goal.id)
    work(board, parser.id)
    assert board.get(tests.id).status == "ready"
    board.goals.advance(clock.now())
    assert board.goals.show(goal.id).goal.status == "working"
    work(board, tests.id)
    assert board.goals.advance(clock.now()).to_json() == {"done": [goal.id]}
    done = board.goals.show(goal.id)
    assert (done.goal.status, done.goal.reason) == ("done", "all 2 cards are done")
    assert done.progress == {"done": 2, "total": 2}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (_plan(("a", ["b"]), ("b", ["a"])), "the plan's `after` links form a cycle: a after b"),
        (
            json.dumps({"cards": [{"key": "a", "title": "A", "profile": "gpt-9"}]}),
            "card 'a' names unknown profile 'gpt-9'",
        ),
        ('{"cards": [{"key": "a", "title": "A"', "the plan is not valid JSON"),
        (None, "the agent wrote no plan to $KANBAN_PLAN_FILE"),
    ],
    ids=["cycle", "unknown profile", "malformed JSON", "no file"],
)
def test_a_bad_plan_fails_the_planner_run_with_the_reason_and_creates_nothing(
    board: kanban.Board, content: str | None, reason: str
) -> None:
    goal = board.goals.add("Ship the parser", planner="demo")
    planner = planner_of(board, goal.id)
    before = snapshot(board.engine)

    ended = run_role(board, planner, content)

    assert ended.run.outcome == "failed"
    assert ended.run.error is not None and ended.run.error.startswith("plan refused: ")
    assert reason in ended.run.error
    card = board.get(planner)
    assert card.status == "ready" and card.attempts == 1  # retried like any failure
    assert reason in (card.reason or "")
    detail = board.goals.show(goal.id)
    assert [c.id for c in detail.cards] == [planner]  # no card of the plan exists
    assert detail.goal.status == "planning" and detail.turns[0].plan is None
    after = snapshot(board.engine)
    assert after["cards"][1:] == before["cards"][1:] == []
    assert after["goal_turns"] == before["goal_turns"]
    assert after["goals"] == before["goals"]


def test_an_agent_reporting_a_bad_plan_itself_keeps_its_lease_to_fix_it(
    board: kanban.Board,
) -> None:
    goal = board.goals.add("Ship the parser", planner="demo")
    planner = planner_of(board, goal.id)
    claim = board.claim(card_id=planner)
    assert claim is not None
    path = goals.run_dir(board.settings.state_dir, claim.run_id) / "plan.json"
    path.parent.mkdir(parents=True)
    path.write_text(_plan(("a", ["a"])))
    with pytest.raises(errors.PlanError, match="lists itself in `after`; fix the file"):
        board.complete(planner, token=claim.token)
    assert board.runs(planner)[0].live  # nothing changed: the agent still holds its lease
    path.write_text(_plan(("a", [])))
    assert board.complete(planner, token=claim.token).status == "done"
    assert board.goals.show(goal.id).goal.status == "proposed"


def test_judged_not_done_then_done_over_two_turns(board: kanban.Board) -> None:
    goal = board.goals.add("Ship the parser", planner="demo", judge="demo", auto=True)
    run_role(board, planner_of(board, goal.id), _plan(("a", [])))
    first = board.goals.show(goal.id)
    assert first.goal.status == "working"  # --auto: no approval needed
    (card_a,) = first.turns[0].cards
    work(board, card_a)
    assert board.goals.advance(clock.now()).to_json() == {"judging": [goal.id]}
    judge = board.get(board.goals.show(goal.id).turns[0].judge_card or 0)
    assert (judge.role, judge.status, judge.parents) == ("judge", "ready", (card_a,))
    assert f"card {card_a} worked" in judge.body and "$KANBAN_VERDICT_FILE" in judge.body
    assert board.goals.advance(clock.now()).to_json() == {}  # judged once per turn

    run_role(board, judge.id, '{"done": false, "reason": "no tests for the parser"}')
    second = board.goals.show(goal.id)
    assert (second.goal.status, second.goal.turn) == ("planning", 2)
    planner2 = board.get(second.turns[1].planner_card or 0)
    assert "no tests for the parser" in planner2.body and planner2.parents == (judge.id,)
    assert second.turns[1].feedback == "no tests for the parser"

    run_role(board, planner2.id, _plan(("tests", [])))
    (tests,) = board.goals.show(goal.id).turns[1].cards
    assert board.get(tests).parents == (judge.id,)  # starts from everything judged so far
    work(board, tests)
    board.goals.advance(clock.now())
    judge2 = board.goals.show(goal.id).turns[1].judge_card or 0
    run_role(board, judge2, '{"done": true, "reason": "parser and tests are in"}')

    final = board.goals.show(goal.id).to_json()
    assert final["goal"]["status"] == "done"
    assert [t["verdict"] for t in final["turns"]] == [
        {"done": False, "reason": "no tests for the parser"},
        {"done": True, "reason": "parser and tests are in"},
    ]
    assert final["progress"] == {"done": 2, "total": 2}


def test_a_goal_whose_turn_budget_is_spent_ends_blocked(board: kanban.Board) -> None:
    goal = board.goals.add("Ship it", planner="demo", judge="demo", max_turns=1, auto=True)
    run_role(board, planner_of(board, goal.id), _plan(("a", [])))
    work(board, board.goals.show(goal.id).turns[0].cards[0])
    board.goals.advance(clock.now())
    judge = board.goals.show(goal.id).turns[0].judge_card or 0
    run_role(board, judge, '{"done": false, "reason": "still broken"}')
    ended = board.goals.show(goal.id).goal
    assert ended.status == "blocked"
    assert ended.reason == (
        "the turn budget is spent (1 of 1 turns) and the judge says it is not done: still broken"
    )
    assert board.cards(status=["ready", "todo", "triage"]) == []


def test_a_bad_verdict_fails_the_judge_run_and_keeps_the_goal_judging(
    board: kanban.Board,
) -> None:
    goal = board.goals.add("Ship it", planner="demo", judge="demo", auto=True)
    run_role(board, planner_of(board, goal.id), _plan(("a", [])))
    work(board, board.goals.show(goal.id).turns[0].cards[0])
    board.goals.advance(clock.now())
    judge = board.goals.show(goal.id).turns[0].judge_card or 0
    ended = run_role(board, judge, '{"done": "maybe"}')
    assert ended.run.outcome == "failed"
    assert (
        ended.run.error
        == 'verdict refused: the verdict must be {"done": true or false, "reason": "..."}'
    )
    detail = board.goals.show(goal.id)
    assert detail.goal.status == "judging" and detail.turns[0].verdict is None


def test_without_a_judge_a_card_given_up_blocks_the_goal(board: kanban.Board) -> None:
    goal = board.goals.add("Ship it", planner="demo", auto=True)
    run_role(board, planner_of(board, goal.id), _plan(("a", []), ("b", [])))
    a, b = board.goals.show(goal.id).turns[0].cards
    work(board, a)
    board.cancel(b, reason="not needed")
    board.goals.advance(clock.now())
    ended = board.goals.show(goal.id).goal
    assert ended.status == "blocked"
    assert ended.reason == f"cards {b} ended without being done, and the goal has no judge"


def test_a_planner_card_that_ends_without_a_plan_blocks_the_goal(board: kanban.Board) -> None:
    goal = board.goals.add("Ship it", planner="demo")
    planner = planner_of(board, goal.id)
    board.cancel(planner)
    assert board.goals.advance(clock.now()).to_json() == {"blocked": [goal.id]}
    ended = board.goals.show(goal.id).goal
    assert (ended.status, ended.reason) == (
        "blocked",
        f"its planner card {planner} is cancelled and left no plan",
    )


def test_cancelling_a_goal_cancels_its_open_cards(board: kanban.Board) -> None:
    goal = board.goals.add("Ship it", planner="demo")
    run_role(board, planner_of(board, goal.id), _plan(("a", []), ("b", ["a"])))
    a, b = board.goals.show(goal.id).turns[0].cards
    cancelled = board.goals.cancel(goal.id, reason="changed my mind")
    assert (cancelled.status, cancelled.reason) == ("cancelled", "changed my mind")
    assert {board.get(a).status, board.get(b).status} == {"cancelled"}
    assert board.get(planner_of(board, goal.id)).status == "done"
    with pytest.raises(errors.InvalidTransition):
        board.goals.approve(goal.id)


def test_unknown_goals_and_profiles_are_refused(board: kanban.Board) -> None:
    before = snapshot(board.engine)
    with pytest.raises(errors.GoalNotFound, match="no goal 42"):
        board.goals.show(42)
    with pytest.raises(errors.ProfileError, match="unknown profile 'gpt-9'"):
        board.goals.add("x", planner="gpt-9")
    with pytest.raises(errors.ProfileError, match="unknown profile 'nope'"):
        board.goals.add("x", planner="demo", judge="nope")
    with pytest.raises(errors.UsageError, match="needs a planner"):
        board.goals.add("x")
    with pytest.raises(errors.UsageError, match="needs an objective"):
        board.goals.add("  ", planner="demo")
    with pytest.raises(errors.UsageError, match="max turns 0"):
        board.goals.add("x", planner="demo", max_turns=0)
    assert snapshot(board.engine) == before


def test_goal_commands_with_a_plan_of_your_own(cli: Any, board_url: str, tmp_path: Path) -> None:
    good = tmp_path / "release.json"
    good.write_text(_plan(("notes", []), ("tag", ["notes"])))
    made = json.loads(
        cli.ok("goal", "add", "Release 2.1", "--plan", str(good), "--auto", "--json").stdout
    )
    assert (made["status"], made["planner"]) == ("working", None)
    with kanban.open_board(board_url) as board:
        assert [(c.title, c.status) for c in board.cards()] == [
            ("Do notes", "ready"),
            ("Do tag", "todo"),
        ]
        before = snapshot(board.engine)
    listed = cli.ok("goal", "ls").stdout
    assert "working" in listed and "Release 2.1" in listed
    assert "turn 1" in cli.ok("goal", "show", "1").stdout

    bad = tmp_path / "cycle.json"
    bad.write_text(_plan(("a", ["b"]), ("b", ["a"])))
    for args, code, message in [
        (
            ["goal", "add", "x", "--plan", str(bad)],
            11,
            f"kanban: plan {bad} refused: the plan's `after` links form a cycle",
        ),
        (
            ["goal", "add", "x", "--plan", str(tmp_path / "none.json")],
            11,
            "kanban: cannot read the plan",
        ),
        (["goal", "add", "x", "--planner", "gpt-9"], 6, "kanban: unknown profile 'gpt-9'"),
        (
            ["goal", "approve", "1"],
            4,
            "kanban: goal 1 is working; only a proposed plan can be approved",
        ),
        (["goal", "show", "9"], 3, "kanban: no goal 9 on this board"),
        (["goal", "ls", "--status", "sleeping"], 2, "kanban: unknown goal status 'sleeping'"),
    ]:
        result = cli(*args)
        assert result.exit_code == code, result.output
        assert result.output.startswith(message), result.output
        assert result.output.count("\n") == 1
    with kanban.open_board(board_url) as board:
        assert snapshot(board.engine) == before
    assert "cancelled" in cli.ok("goal", "cancel", "1").stdout
