"""The run lifecycle owned in one place: one verb ends a run (with one result value), one
`Dispatcher.tick` defines a tick, and goals and schedules hang off the public `Board`."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import kanban
from kanban import board as verbs
from kanban import clock, dispatcher, errors, goals, schedules, views
from kanban.states import RunOutcome, ScheduleKind
from kanban.testing import board_in

PLAN = json.dumps({"cards": [{"key": "a", "title": "Do a", "profile": "demo"}]})


@pytest.fixture
def board(repo: Path, repo_db: str) -> Iterator[kanban.Board]:
    b = board_in(repo, db=repo_db)
    yield b
    b.close()


def _planner_claim(board: kanban.Board) -> tuple[views.Claim, Path]:
    goal = board.goals.add("Ship it", planner="demo")
    planner = board.goals.show(goal.id).turns[0].planner_card
    assert planner is not None
    claim = board.claim(card_id=planner)
    assert claim is not None
    plan_file = goals.run_dir(board.settings.state_dir, claim.run_id) / "plan.json"
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    plan_file.write_text(PLAN)
    return claim, plan_file


# ------------------------------------------------------------------- one end-of-run verb


def test_the_end_run_verb_reads_no_file_a_plan_comes_in_the_result(board: kanban.Board) -> None:
    """The plan file is on disk, but the verb applies only what the result carries: without
    a delivery read beforehand the planner's run fails, saying so (the verb opened no file)."""
    claim, _ = _planner_claim(board)
    ended = board.tx.write(
        lambda c: verbs.end_run(
            c,
            card_id=claim.card_id,
            token=claim.token,
            result=views.RunResult(RunOutcome.DONE),
            now=clock.now(),
            backoff=board.backoff,
        )
    )
    assert ended.run.outcome == "failed"
    assert ended.run.error == "plan refused: no plan was read for this run"
    goal_id = board.get(claim.card_id).goal_id
    assert goal_id is not None
    assert [c.role for c in board.goals.show(goal_id).cards] == ["planner"]  # nothing proposed


def test_the_same_verb_delivers_the_plan_read_before_the_transaction(
    board: kanban.Board,
) -> None:
    claim, plan_file = _planner_claim(board)
    card = board.get(claim.card_id)
    result = goals.with_delivery(
        board.settings, card, claim.run_id, views.RunResult(RunOutcome.DONE, summary="planned")
    )
    assert result.delivery is not None
    assert result.delivery.plan is not None
    plan_file.unlink()  # read already: the transaction needs nothing from disk
    ended = board.tx.write(
        lambda c: verbs.end_run(
            c,
            card_id=claim.card_id,
            token=claim.token,
            result=result,
            now=clock.now(),
            backoff=board.backoff,
        )
    )
    assert ended.run.outcome == "done"
    assert card.goal_id is not None
    detail = board.goals.show(card.goal_id)
    assert detail.goal.status == "proposed"
    assert [c.title for c in detail.cards if c.role is None] == ["Do a"]


def test_the_api_refuses_a_bad_plan_and_changes_nothing(board: kanban.Board) -> None:
    claim, plan_file = _planner_claim(board)
    plan_file.write_text('{"cards": [{"key": "a", "title": "x", "profile": "nope"}]}')
    with pytest.raises(errors.PlanError, match="fix the file and report again"):
        board.complete(claim.card_id, token=claim.token)
    assert board.get(claim.card_id).status == "running"
    assert board.runs(claim.card_id)[-1].outcome is None  # still holds its lease
    plan_file.write_text(PLAN)
    assert board.complete(claim.card_id, token=claim.token).status == "done"


def test_a_result_records_usage_log_path_and_metadata(board: kanban.Board) -> None:
    card = board.add("t")
    claim = board.claim(card_id=card.id)
    assert claim is not None
    result = views.RunResult(
        RunOutcome.FAILED,
        error="boom",
        exit_code=3,
        tokens_in=10,
        tokens_out=2,
        cost_usd=0.5,
        log_path="/tmp/x.log",
        metadata={"pr": 12},
    )
    board.end_run(card.id, token=claim.token, result=result)
    run = board.runs(card.id)[-1]
    assert (run.outcome, run.exit_code, run.tokens_in, run.cost_usd, run.log_path) == (
        "failed",
        3,
        10,
        0.5,
        "/tmp/x.log",
    )
    ended = [e for e in board.show(card.id).events if e.kind == "run_ended"]
    assert ended[-1].data["metadata"] == {"pr": 12}


def test_there_is_one_end_run() -> None:
    assert not hasattr(goals, "end_run")


# ------------------------------------------------------------------- one definition of a tick


def test_a_dispatcher_built_from_the_library_fires_a_due_schedule(board: kanban.Board) -> None:
    board.schedules.add(
        "* * * * *",
        name="every-minute",
        kind=ScheduleKind.CARD,
        template=schedules.card_template("Tick tock", profile=None, body="", repo=None),
    )
    later = clock.now() + dt.timedelta(seconds=61)
    report = dispatcher.Dispatcher(board).tick(later)  # no hooks passed: a standard step
    assert len(report.schedules.fired) == 1
    fired = report.schedules.fired[0]
    assert board.get(fired["card"]).title == "Tick tock"
    assert report.to_json()["hooks"]["schedules"]["fired"][0]["card"] == fired["card"]
    assert report.next_due is not None and report.next_due > later


def test_a_dispatcher_built_from_the_library_advances_a_goal(board: kanban.Board) -> None:
    plan = board.goals.read_plan(_write(board.settings.state_dir / "p.json", PLAN))
    goal = board.goals.add("Ship it", plan=plan, auto=True)
    (card_id,) = board.goals.show(goal.id).turns[0].cards
    claim = board.claim(card_id=card_id)
    assert claim is not None
    board.complete(card_id, token=claim.token, summary="did a")
    loop = dispatcher.Dispatcher(board)
    assert not loop.drained()  # the goal waits for a tick to end it
    report = loop.tick()
    assert report.goals == goals.Advance(done=(goal.id,))
    assert report.to_json()["hooks"]["goals"] == {"done": [goal.id]}
    assert board.goals.show(goal.id).goal.status == "done"
    assert loop.drained()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_goals_and_schedules_hang_off_the_board_like_cards(board: kanban.Board) -> None:
    assert isinstance(board.goals, goals.Goals)
    assert isinstance(board.schedules, schedules.Schedules)
    assert board.goals.ls() == []
    assert board.schedules.ls() == []
