"""The tick in-process, with real child processes standing in for supervisors."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

import kanban
from kanban import dispatcher, processes
from kanban.testing import board_in, wait_for


class CommandSpawner:
    """Starts `command` instead of a supervisor (a supervisor that misbehaves on purpose)."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        proc = processes.spawn(self.command, cwd=cwd, env=env)
        self.started.append(proc)
        return proc


@pytest.fixture
def board(repo: Path, repo_db: str) -> Iterator[kanban.Board]:
    b = board_in(repo, db=repo_db, lease_ttl="1", heartbeat_interval="0.2")
    yield b
    b.close()


def test_a_supervisor_that_dies_before_checking_in_is_spawn_failed(board: kanban.Board) -> None:
    card = board.add("x", profile="demo")
    spawner = CommandSpawner([sys.executable, "-c", "raise SystemExit(3)"])
    d = dispatcher.Dispatcher(board, spawner=spawner)
    assert d.tick().claimed == [card.id]
    spawner.started[0].wait(timeout=30)
    report = d.tick()
    assert report.spawn_failed == [card.id]
    run = board.runs(card.id)[0]
    assert run.outcome == "spawn_failed"
    assert "the supervisor exited (exit code 3) before starting" in (run.error or "")


def test_a_starting_supervisor_keeps_its_lease_while_our_child_lives(board: kanban.Board) -> None:
    card = board.add("slow start", profile="demo")
    spawner = CommandSpawner([sys.executable, "-c", "import time; time.sleep(60)"])
    d = dispatcher.Dispatcher(board, spawner=spawner)
    try:
        d.tick()
        time.sleep(1.5)  # past the 1 s TTL
        assert d.tick().reclaimed == []
        assert board.runs(card.id)[0].outcome is None
        # A new dispatcher cannot vouch for a child it did not start: the lease decides.
        fresh = dispatcher.Dispatcher(board, spawner=spawner)
        wait_for(
            lambda: fresh.tick().reclaimed == [card.id],
            timeout=10,
            interval=0.3,
            what="the reclaim",
        )
    finally:
        for proc in spawner.started:
            proc.kill()
            proc.wait()


def test_tick_claims_per_profile_capacity_and_never_overlapping_paths(
    board: kanban.Board, repo: Path
) -> None:
    from kanban.testing import write_profile

    write_profile(repo, "solo", 'command = ["true"]\nconcurrency = 1\n')
    a = board.add("a", profile="solo")
    board.add("b", profile="solo")
    c = board.add("c", profile="demo", paths=["src/**"])
    board.add("d", profile="demo", paths=["src/x.py"])
    e = board.add("e", profile="demo", paths=["docs/**"])
    spawner = CommandSpawner([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        report = dispatcher.Dispatcher(board, spawner=spawner, max_workers=10).tick()
        assert sorted(report.claimed) == [a.id, c.id, e.id]
        assert report.waiting == 2
    finally:
        for proc in spawner.started:
            proc.kill()
            proc.wait()


def test_next_due_points_at_the_next_backoff(board: kanban.Board) -> None:
    card = board.add("retry me", profile="demo")
    claim = board.claim()
    assert claim is not None
    after = board.fail(card.id, token=claim.token, error="boom")
    # As of the moment it failed (the backoff is 0.1 s here: a slow tick would claim it).
    report = dispatcher.Dispatcher(board, spawner=CommandSpawner(["true"])).tick(after.updated_at)
    assert report.next_due == after.not_before
