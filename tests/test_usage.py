"""Usage on the board: tokens and cost stored per run, cost caps per card, spend totals, and
how `kanban show`, `runs`, `status` and `cap` show them."""

from __future__ import annotations

import datetime as dt
import json

import pytest

import kanban
from kanban import board as verbs
from kanban import clock, errors, views
from kanban.models import cards
from kanban.states import RunOutcome
from kanban.testing import snapshot


def _run_with_usage(
    b: kanban.Board, title: str = "t", *, cost: float | None, outcome: RunOutcome = RunOutcome.DONE
) -> kanban.views.Claim:  # type: ignore[name-defined]
    card = b.add(title)
    won = b.claim(card_id=card.id)
    assert won is not None
    b.tx.write(
        lambda c: verbs.end_run(
            c,
            card_id=card.id,
            token=won.token,
            result=views.RunResult(outcome, tokens_in=1000, tokens_out=50, cost_usd=cost),
            now=clock.now(),
            backoff=b.backoff,
        )
    )
    return won


def test_a_run_keeps_its_tokens_and_cost(board: kanban.Board) -> None:
    won = _run_with_usage(board, cost=0.42)
    run = board.runs(won.card_id)[0]
    assert (run.tokens_in, run.tokens_out, run.cost_usd) == (1000, 50, 0.42)
    assert board.runs(board.add("never ran").id) == []


def test_usage_after_the_agent_reported_is_still_recorded_with_its_token(
    board: kanban.Board,
) -> None:
    card = board.add("reports first, prints its usage last")
    won = board.claim(card_id=card.id)
    assert won is not None
    board.complete(card.id, token=won.token, summary="done")
    board.tx.write(
        lambda c: verbs.record_usage(
            c, card_id=card.id, token=won.token, tokens_in=7, tokens_out=3, cost_usd=0.01
        )
    )
    run = board.runs(card.id)[0]
    assert (run.outcome, run.tokens_in, run.cost_usd) == ("done", 7, 0.01)
    with pytest.raises(errors.LeaseLost):
        board.tx.write(
            lambda c: verbs.record_usage(
                c, card_id=card.id, token="not-the-token", tokens_in=1, tokens_out=1, cost_usd=9.0
            )
        )
    assert board.runs(card.id)[0].cost_usd == 0.01


def test_spend_adds_up_runs_by_card_by_condition_and_since(board: kanban.Board) -> None:
    first = _run_with_usage(board, "a", cost=0.25)
    second = _run_with_usage(board, "b", cost=None, outcome=RunOutcome.FAILED)
    total = board.spend()
    assert (total.runs, total.reported, total.cost_usd) == (2, 1, 0.25)
    assert (total.tokens_in, total.tokens_out) == (2000, 100)
    assert board.spend(card_ids=[second.card_id]).cost_usd == 0.0
    only_b = board.tx.read(lambda c: verbs.spend(c, where=cards.c.title == "b"))
    assert only_b.runs == 1
    later = board.spend(since=clock.now() + dt.timedelta(minutes=1))
    assert later.runs == 0
    assert board.tx.read(lambda c: verbs.spend(c, exclude_run=first.run_id)).runs == 1


def test_a_blocked_run_that_failed_spends_an_attempt_and_one_that_asked_does_not(
    board: kanban.Board,
) -> None:
    for spends, expected in ((True, 1), (None, 0)):
        card = board.add(f"blocked, spends={spends}")
        won = board.claim(card_id=card.id)
        assert won is not None
        board.tx.write(
            lambda c, won=won, card=card, spends=spends: verbs.end_run(
                c,
                card_id=card.id,
                token=won.token,
                result=views.RunResult(
                    RunOutcome.BLOCKED, error="cannot log in", spends_attempt=spends
                ),
                now=clock.now(),
                backoff=board.backoff,
            )
        )
        final = board.get(card.id)
        assert (final.status, final.attempts) == ("blocked", expected)


def test_a_stalled_run_spends_an_attempt_and_is_retried(board: kanban.Board) -> None:
    card = board.add("stalls")
    won = board.claim(card_id=card.id)
    assert won is not None
    board.end_run(card.id, token=won.token, outcome=RunOutcome.STALLED, error="stalled: x")
    final = board.get(card.id)
    assert (final.status, final.attempts) == ("ready", 1)
    assert board.runs(card.id)[0].outcome == "stalled"


def test_a_cards_cost_cap_is_set_shown_and_removed_with_history(board: kanban.Board) -> None:
    card = board.add("capped", max_cost_usd=2.5)
    assert card.max_cost_usd == 2.5
    assert board.set_cost_cap(card.id, 5).max_cost_usd == 5.0
    assert board.set_cost_cap(card.id, None).max_cost_usd is None
    kinds = [e for e in board.show(card.id).events if e.kind == "cost_cap"]
    assert [(e.data or {}).get("after") for e in kinds] == [5.0, None]


@pytest.mark.parametrize("bad", [0, -1, float("nan"), 1e12])
def test_a_bad_cost_cap_is_refused_and_changes_nothing(board: kanban.Board, bad: float) -> None:
    card = board.add("x")
    before = snapshot(board.engine)
    with pytest.raises(errors.UsageError, match="out of range"):
        board.add("y", max_cost_usd=bad)
    with pytest.raises(errors.UsageError, match="out of range"):
        board.set_cost_cap(card.id, bad)
    assert snapshot(board.engine) == before


def test_cli_add_with_a_cap_and_kanban_cap(cli) -> None:  # type: ignore[no-untyped-def]
    card = json.loads(cli.ok("add", "Refactor", "--max-cost", "$2.50", "--json").output)
    assert card["max_cost_usd"] == 2.5
    assert "$0.00 of $2.50 cap" in cli.ok("cap", str(card["id"])).output
    assert "of $4.00 cap" in cli.ok("cap", str(card["id"]), "4").output
    shown = json.loads(cli.ok("cap", str(card["id"]), "--none", "--json").output)
    assert shown["max_cost_usd"] is None and shown["spent"]["cost_usd"] == 0.0
    for bad in (["add", "x", "--max-cost", "lots"], ["cap", str(card["id"]), "-3"]):
        result = cli(*bad)
        assert result.exit_code == 2, result.output
    assert cli("cap", "999", "1").exit_code == 3


def test_show_runs_and_status_show_usage(cli, board_url: str) -> None:  # type: ignore[no-untyped-def]
    with kanban.open_board(board_url) as b:
        won = _run_with_usage(b, "costly", cost=0.1234)
        b.set_cost_cap(won.card_id, 1)
    shown = cli.ok("show", str(won.card_id)).output
    assert "cost      $0.12 of $1.00 cap  (1 run; 1,000 in / 50 out)" in shown
    assert "1,000 in / 50 out  $0.12" in shown
    assert "1,000 in / 50 out  $0.12" in cli.ok("runs", str(won.card_id)).output
    status = cli.ok("status").output
    assert "usage: $0.12  (1 run; 1,000 in / 50 out)" in status
    assert "last 24 h: $0.12" in status
    data = json.loads(cli.ok("status", "--json").output)
    assert data["spend"]["cost_usd"] == pytest.approx(0.1234)
    assert data["spend_24h"]["runs"] == 1
    run = json.loads(cli.ok("runs", str(won.card_id), "--json").output)[0]
    assert (run["tokens_in"], run["tokens_out"], run["cost_usd"]) == (1000, 50, 0.1234)
