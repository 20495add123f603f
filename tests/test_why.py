"""`kanban why`: one test per reason a card is not running. Real boards; no processes needed
(running cards are made by real claims)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import kanban
from kanban import board as verbs
from kanban import clock, processes, why
from kanban.testing import board_in, write_profile


@pytest.fixture
def board(repo: Path, repo_db: str) -> Iterator[kanban.Board]:
    b = board_in(repo, db=repo_db)
    _dispatcher_alive(b)
    yield b
    b.close()


def _dispatcher_alive(b: kanban.Board, *, ago: float = 0.0, name: str = "vm:1") -> None:
    """A dispatcher row for this test's own process (alive: its pid and start time match)."""
    now = clock.now() - dt.timedelta(seconds=ago)
    me = processes.Identity.of(os.getpid())
    b.tx.write(
        lambda c: verbs.dispatchers.beat(
            c,
            name=name,
            host=b.settings.host_id,
            pid=me.pid,
            started_at=dt.datetime.fromtimestamp(me.started, dt.UTC),
            now=now,
            interval=60.0,
            version="test",
        )
    )


def _reasons(b: kanban.Board, card_id: int, **kwargs: int) -> str:
    return "\n".join(why.explain(b, card_id, **kwargs))


def test_waiting_for_parents(board: kanban.Board) -> None:
    parent = board.add("parent", profile="demo")
    child = board.add("child", profile="demo", parents=[parent.id])
    assert f"waits for its parents: {parent.id} (ready)" in _reasons(board, child.id)


def test_a_parent_needs_a_person(board: kanban.Board) -> None:
    parent = board.add("parent", profile="demo")
    child = board.add("child", profile="demo", parents=[parent.id])
    board.block(parent.id, reason="which colour?")
    assert f"parent {parent.id} needs a person: it is blocked (which colour?)" in _reasons(
        board, child.id
    )


def test_running(board: kanban.Board) -> None:
    card = board.add("busy", profile="demo")
    board.claim()
    assert "it is running: run 1, attempt 1" in _reasons(board, card.id)


def test_blocked(board: kanban.Board) -> None:
    card = board.add("stuck", profile="demo")
    board.block(card.id, reason="need a key")
    assert "blocked: need a key" in _reasons(board, card.id)


def test_in_review(board: kanban.Board) -> None:
    card = board.add("look", profile="demo", review=True)
    claim = board.claim()
    assert claim is not None
    board.complete(card.id, token=claim.token)
    assert "waits for review" in _reasons(board, card.id)


def test_backing_off(repo: Path) -> None:
    with board_in(repo, backoff_base="10m", backoff_cap="1h") as b:  # still backing off
        _dispatcher_alive(b)
        card = b.add("flaky", profile="demo")
        claim = b.claim()
        assert claim is not None
        b.fail(card.id, token=claim.token, error="network down")
        reasons = _reasons(b, card.id)
    assert "backing off until" in reasons and "network down" in reasons


def test_no_dispatcher_has_ever_run(repo: Path, repo_db: str) -> None:
    with board_in(repo, db=repo_db) as b:
        card = b.add("lonely", profile="demo")
        assert "no dispatcher has ever run on this board" in _reasons(b, card.id)


def test_the_dispatcher_is_down(repo: Path, repo_db: str) -> None:
    with board_in(repo, db=repo_db) as b:
        _dispatcher_alive(b, ago=3600)
        card = b.add("forgotten", profile="demo")
        assert "no dispatcher is running: the last one (vm:1) silent 1h00m ago" in _reasons(
            b, card.id
        )


def test_no_profile(board: kanban.Board) -> None:
    card = board.add("who does this?")
    assert "it has no profile" in _reasons(board, card.id)


def test_unknown_profile(board: kanban.Board) -> None:
    card = board.add("exotic", profile="nobody-has-this")
    assert "its profile 'nobody-has-this' is unknown" in _reasons(board, card.id)


def test_broken_profile(board: kanban.Board, repo: Path) -> None:
    write_profile(repo, "broken", "command = [\n")
    card = board.add("doomed", profile="broken")
    assert "its profile 'broken' does not load" in _reasons(board, card.id)


def test_profile_at_capacity(board: kanban.Board, repo: Path) -> None:
    write_profile(repo, "single", 'command = ["true"]\nconcurrency = 1\n')
    board.add("first", profile="single")
    second = board.add("second", profile="single")
    board.claim()
    assert "profile single is at capacity" in _reasons(board, second.id)


def test_host_at_capacity(board: kanban.Board) -> None:
    board.add("first", profile="demo")
    second = board.add("second", profile="shell")
    board.claim()
    assert "is at capacity: 1 of 1 workers busy" in _reasons(board, second.id, max_workers=1)


def test_paths_overlap_a_running_card(board: kanban.Board) -> None:
    first = board.add("api", profile="demo", paths=["src/api/**"])
    second = board.add("users", profile="demo", paths=["src/api/users.py"])
    board.claim(card_id=first.id)
    assert f"overlap card {first.id}" in _reasons(board, second.id)


def test_nothing_holds_it_back(board: kanban.Board) -> None:
    card = board.add("go", profile="demo")
    assert _reasons(board, card.id) == "nothing holds it back: the next tick claims it"


def test_cli_why_prints_each_reason(board: kanban.Board, repo_db: str) -> None:
    from click.testing import CliRunner

    from kanban.cli import cli

    card = board.add("exotic", profile="nobody-has-this")
    result = CliRunner().invoke(cli, ["--db", repo_db, "why", str(card.id)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("- its profile 'nobody-has-this' is unknown")


def test_the_board_wide_limit(repo: Path, repo_db: str) -> None:
    with board_in(repo, db=repo_db, max_running="1") as b:
        _dispatcher_alive(b)
        b.add("first", profile="demo")
        second = b.add("second", profile="shell")
        b.claim()
        assert "the board-wide limit of 1 running cards is reached" in _reasons(b, second.id)


def test_an_ended_run_not_yet_released_holds_the_card(board: kanban.Board) -> None:
    """Cancelled then retried while its agent may still run: `why` says the card waits for
    the earlier run to be released, as the claim does; once released, nothing holds it."""
    from kanban.board import releases

    card = board.add("again", profile="demo")
    claim = board.claim(card_id=card.id)
    assert claim is not None
    board.tx.write(  # the supervisor checked in: an agent may be alive from here on
        lambda c: verbs.record_start(
            c,
            card_id=card.id,
            token=claim.token,
            now=clock.now(),
            supervisor_pid=1,
            supervisor_started=1.0,
        )
    )
    board.cancel(card.id)
    board.retry(card.id)
    reasons = _reasons(board, card.id)
    assert reasons.startswith(
        f"an earlier run's agent may still be alive: run {claim.run_id} (cancelled) on "
        f"{board.settings.host_id} is not yet confirmed gone; it starts once that run is released"
    ), reasons
    assert "next tick claims it" not in reasons
    _dispatcher_alive(board, ago=3600)  # other reasons do not hide it
    assert "is not yet confirmed gone" in _reasons(board, card.id)
    _dispatcher_alive(board)
    assert board.tx.write(
        lambda c: releases.release_run(c, run_id=claim.run_id, now=clock.now(), how="test")
    )
    assert _reasons(board, card.id) == "nothing holds it back: the next tick claims it"
