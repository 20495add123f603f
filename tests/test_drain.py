"""`kanban dispatch --drain` ends when nothing can make progress and reports: done, blocked,
failed and the cards left that cannot run, with reasons; the exit code says whether all went
well. Real `kanban dispatch` processes on real repositories, both backends."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import kanban
from kanban import drain, views
from kanban.testing import board_in, kanban_process, kill_run_processes, write_profile

LIMITED = (
    'command = ["{python}", "-m", "kanban.demo_agent"]\n'
    'max_attempts = 2\nrate_limit_cooldown = "5m"\n'
)


@pytest.fixture
def board(repo: Path, repo_db: str) -> Iterator[kanban.Board]:
    b = board_in(repo, db=repo_db)
    yield b
    kill_run_processes(b)
    b.close()


def _drain(board: kanban.Board, *args: str) -> tuple[int, str]:
    assert board.settings.repo is not None
    proc = kanban_process(
        board.settings.repo,
        "dispatch",
        "--drain",
        *args,
        env={"KANBAN_DB": board.url},
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(timeout=150)  # far below a 5-minute cooldown
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the drain did not end:\n{out}\n{err}") from None
    return proc.returncode, out


@pytest.mark.slow
def test_a_drain_reports_done_blocked_and_left_and_exits_1(board: kanban.Board) -> None:
    one = board.add("one", profile="demo")
    two = board.add("two", profile="demo", parents=[one.id])
    stuck = board.add("asks a person", profile="demo", body="demo: block pick a colour")
    orphan = board.add("no profile")
    after = board.add("after the block", profile="demo", parents=[stuck.id])
    code, out = _drain(board, "--json")
    assert code == 1, out
    report = json.loads(out)
    assert [c["id"] for c in report["done"]] == [one.id, two.id]
    assert report["blocked"] == [
        {"id": stuck.id, "title": "asks a person", "status": "blocked", "reason": "pick a colour"}
    ]
    assert report["failed"] == []
    assert [(c["id"], c["reason"]) for c in report["left"]] == [
        (orphan.id, "it has no profile, so no agent can run it"),
        (after.id, f"it waits for its parents: {stuck.id} (blocked)"),
    ]
    assert report["exit_code"] == 1


@pytest.mark.slow
def test_ok_if_blocked_exits_0_and_the_text_summary_names_each_card(board: kanban.Board) -> None:
    board.add("fine", profile="demo")
    stuck = board.add("asks a person", profile="demo", body="demo: block pick a colour")
    code, out = _drain(board, "--ok-if-blocked")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[-2].startswith("drained in ") and lines[-2].endswith(
        ": 1 done, 1 blocked, 0 failed"
    )
    assert lines[-1] == f'  blocked {stuck.id} "asks a person": pick a colour'


@pytest.mark.slow
def test_a_drain_does_not_wait_out_a_five_minute_rate_limit_cooldown(
    repo: Path, board: kanban.Board
) -> None:
    write_profile(repo, "limited", LIMITED)
    card = board.add("quota", profile="limited", body="demo: exit-once 75")
    code, out = _drain(board, "--json")
    assert code == 1, out
    (left,) = json.loads(out)["left"]
    assert left["id"] == card.id
    assert (
        "backing off until" in left["reason"]
        and "past the drain's limit of 1m00s" in left["reason"]
    )
    assert "rate limited" in left["reason"]
    assert [r.outcome for r in board.runs(card.id)] == ["rate_limited"]


@pytest.mark.slow
def test_a_drain_with_only_an_unrunnable_card_ends_at_once(board: kanban.Board) -> None:
    card = board.add("typo", profile="shel")
    code, out = _drain(board)
    assert code == 1, out
    assert f"  left {card.id} \"typo\": its profile 'shel' is unknown (known: " in out
    assert board.get(card.id).status == "ready"  # reported, not changed


def test_exit_codes() -> None:
    def card(status: str) -> views.CardView:
        return views.CardView(
            id=1, title="t", status=status, profile="demo", priority=0, parents=()
        )

    def summary(**groups: tuple[views.CardView, ...]) -> drain.Summary:
        base: dict[str, tuple[views.CardView, ...]] = {
            "done": (),
            "blocked": (),
            "failed": (),
            "other": (),
        }
        return drain.Summary(**{**base, **groups}, left=(), elapsed=0.0)  # type: ignore[arg-type]

    assert summary(done=(card("done"),)).exit_code() == 0
    assert summary(blocked=(card("blocked"),)).exit_code() == 1
    assert summary(blocked=(card("blocked"),)).exit_code(ok_if_blocked=True) == 0
    assert summary(failed=(card("failed"),)).exit_code(ok_if_blocked=True) == 1
    left = drain.Summary((), (), (), (), (drain.Left(card("ready"), "no profile"),), 0.0)
    assert left.exit_code() == 1 and left.exit_code(ok_if_blocked=True) == 0


def test_max_wait_and_ok_if_blocked_need_drain(cli: object) -> None:
    result = cli("dispatch", "--ok-if-blocked")  # type: ignore[operator]
    assert result.exit_code == 2
    assert "--max-wait and --ok-if-blocked go with --drain" in result.output
