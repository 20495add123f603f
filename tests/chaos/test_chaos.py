"""Faults injected into real drains. After each: every card done (or blocked with a reason
when the fault is permanent), no card had two live runs at once, no late report accepted,
the database intact, no process left behind."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from kanban import db
from kanban.testing import git, wait_for, write_profile

from .conftest import Chaos

pytestmark = pytest.mark.chaos


# Faults of one process (the agent's, a log disk, a git lock) behave the same whatever the
# board's database; they run on SQLite only, to keep CI short. The kill -9 drain runs on both.
ONE_BACKEND = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def test_kill_9_agents_supervisors_and_dispatchers_during_a_drain(chaos: Chaos) -> None:
    """Two dispatchers share one board; random SIGKILLs hit all three kinds of process."""
    for i in range(150):
        chaos.board.add(f"card {i}", profile="quick")
    chaos.dispatcher()
    chaos.dispatcher()
    plan = ["agent"] * 10 + ["supervisor"] * 6 + ["dispatcher"] * 3
    chaos.rng.shuffle(plan)
    for what in plan:
        time.sleep(chaos.rng.uniform(0.1, 0.4))
        # Retry until the fault lands on something (agents live half a second).
        hit = wait_for(
            lambda w=what: chaos.kill_random(w) or chaos.drained(),
            timeout=60,
            interval=0.02,
            what=f"a {what} to kill",
        )
        if hit and what == "dispatcher" and not chaos.drained():
            chaos.dispatcher()  # a service manager restarts it, as systemd would
    chaos.wait_drained()
    chaos.stop()
    assert chaos.faults == {"agent": 10, "supervisor": 6, "dispatcher": 3}, chaos.faults
    chaos.check()


@ONE_BACKEND  # SQLite's file locks; PostgreSQL writers lock rows, not the whole board
def test_a_long_reader_and_a_long_writer_do_not_break_the_drain(chaos: Chaos) -> None:
    path = db.sqlite_path(chaos.url)
    assert path is not None
    for i in range(40):
        chaos.board.add(f"card {i}", profile="quick")
    chaos.dispatcher()

    def hold(mode: str, seconds: float) -> None:
        con = sqlite3.connect(path, timeout=60, isolation_level=None)
        con.execute(f"BEGIN {mode}")
        con.execute("SELECT count(*) FROM cards").fetchone()
        time.sleep(seconds)
        con.execute("COMMIT")
        con.close()

    reader = threading.Thread(target=hold, args=("DEFERRED", 6.0))
    reader.start()
    time.sleep(1.0)
    hold("EXCLUSIVE", 3.0)  # every writer waits (busy timeout), heartbeats included
    reader.join()
    chaos.wait_drained()
    chaos.stop()
    chaos.check()


@ONE_BACKEND
def test_a_full_disk_for_logs_blocks_cards_with_the_reason_then_they_recover(chaos: Chaos) -> None:
    logs = chaos.board.settings.log_dir
    logs.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(logs)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        filler = logs / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        write_profile(
            chaos.repo,
            "quick",
            (chaos.repo / "profiles" / "quick.toml")
            .read_text()
            .replace("max_attempts = 10", "max_attempts = 2"),
        )
        cards = [chaos.board.add(f"card {i}", profile="quick").id for i in range(5)]
        proc = chaos.dispatcher("--drain")
        proc.wait(timeout=120)
        for card_id in cards:
            card = chaos.board.get(card_id)
            assert card.status == "blocked"
            assert "cannot write the run's log" in (card.reason or "")
            assert "No space left on device" in (card.reason or "")
        chaos.check(allow_blocked=True)
        filler.unlink()  # space again: a person retries the cards
        for card_id in cards:
            chaos.board.retry(card_id)
        chaos.dispatcher("--drain").wait(timeout=120)
        chaos.check()
    finally:
        chaos.stop()
        subprocess.run(["umount", "-l", str(logs)], check=False)


@ONE_BACKEND
def test_a_git_index_lock_left_behind_is_cleared_and_the_card_finishes(chaos: Chaos) -> None:
    card = chaos.board.add("locked out", profile="demo", body="demo: crash-once")
    tick = chaos.dispatcher("--once")
    tick.wait(timeout=60)
    wait_for(
        lambda: [r.outcome for r in chaos.board.runs(card.id)] == ["crashed"],
        timeout=60,
        what="the first attempt to crash",
    )
    run = chaos.board.runs(card.id)[0]
    assert run.worktree is not None
    gitdir = Path(git(Path(run.worktree), "rev-parse", "--absolute-git-dir"))
    lock = gitdir / "index.lock"
    lock.write_text("")  # what a git killed mid-commit leaves behind
    os.utime(lock, (time.time() - 600, time.time() - 600))
    chaos.dispatcher("--drain").wait(timeout=120)
    assert [r.outcome for r in chaos.board.runs(card.id)] == ["crashed", "done"]
    assert not lock.exists()
    chaos.check()


@ONE_BACKEND
def test_an_agent_that_ignores_sigterm_is_killed_at_its_timeout(chaos: Chaos) -> None:
    write_profile(
        chaos.repo,
        "stubborn",
        # Generous, so that only the hanging first attempt can reach it on a loaded machine.
        'command = ["{python}", "-m", "kanban.demo_agent"]\ntimeout = "8s"\nmax_attempts = 3\n',
    )
    card = chaos.board.add(
        "stubborn", profile="stubborn", body="demo: ignore-term-once\ndemo: hang-once"
    )
    chaos.dispatcher("--drain").wait(timeout=120)
    runs = chaos.board.runs(card.id)
    assert [r.outcome for r in runs] == ["timed_out", "done"]
    log = Path(runs[0].log_path or "").read_text()
    assert "timeout after 8.0s: stopping the agent" in log
    assert "agent killed by SIGKILL" in log or "outcome timed_out" in log
    chaos.check()


@ONE_BACKEND
def test_an_agent_that_forks_a_grandchild_and_exits_leaves_nothing_behind(chaos: Chaos) -> None:
    for i in range(3):
        chaos.board.add(f"forker {i}", profile="demo", body="demo: fork")
    chaos.dispatcher("--drain").wait(timeout=120)
    chaos.check()
