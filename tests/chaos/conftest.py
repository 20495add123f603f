"""The chaos harness: real dispatchers, supervisors and agents on a real board, faults
injected while they drain it, and the promises checked afterwards."""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import kanban
from kanban import db
from kanban.testing import (
    board_in,
    board_processes,
    kanban_process,
    wait_for,
    wait_for_quiet,
    write_profile,
)

pytestmark = pytest.mark.chaos

# A quick agent with no worktree, so a drain of a few hundred cards stays in CI's budget.
QUICK = """
description = "sleeps a moment and succeeds"
command = ["sleep", "0.5"]
workspace = "none"
concurrency = 8
max_attempts = 10
timeout = "60s"
"""


class Chaos:
    def __init__(self, repo: Path, board: kanban.Board) -> None:
        self.repo = repo
        self.board = board
        self.procs: list[subprocess.Popen[str]] = []
        self.rng = random.Random(1234)
        self.faults: Counter[str] = Counter()

    @property
    def url(self) -> str:
        return self.board.settings.db_url

    def dispatcher(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = kanban_process(
            self.repo,
            "dispatch",
            "--max-workers",
            "6",
            "-q",
            *args,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def live(self) -> list[subprocess.Popen[str]]:
        return [p for p in self.procs if p.poll() is None]

    def live_runs(self) -> list[kanban.views.RunView]:  # type: ignore[name-defined]
        return list(self.board.status().running)

    def kill_random(self, what: str) -> bool:
        """SIGKILL one random agent, supervisor or dispatcher; True if something was hit."""
        if what == "dispatcher":
            live = self.live()
            if not live:
                return False
            self.rng.choice(live).kill()
        else:
            runs = [r for r in self.live_runs() if (r.pid if what == "agent" else r.supervisor_pid)]
            if not runs:
                return False
            run = self.rng.choice(runs)
            pid = run.pid if what == "agent" else run.supervisor_pid
            try:
                os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
            except ProcessLookupError:
                return False
        self.faults[what] += 1
        return True

    def drained(self) -> bool:
        counts = self.board.status().counts
        return counts["running"] == 0 and counts["ready"] == 0 and counts["todo"] == 0

    def wait_drained(self, timeout: float = 180) -> None:
        try:
            wait_for(self.drained, timeout=timeout, interval=0.25, what="the board to drain")
        except TimeoutError:
            # Say what was stuck: the dispatchers' fate and every unfinished card's last runs.
            stuck = [
                (
                    c.id,
                    c.status,
                    c.reason,
                    [(r.id, r.outcome, r.released_at, r.error) for r in self.board.runs(c.id)[-2:]],
                )
                for c in self.board.cards()
                if c.status in ("running", "ready", "todo")
            ]
            dispatchers = [p.returncode for p in self.procs]
            raise AssertionError(
                f"not drained after {timeout}s; dispatchers {dispatchers}, stuck {stuck}"
            ) from None

    def stop(self) -> None:
        for proc in self.live():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # ---------------------------------------------------------------- the promises

    def check(self, *, allow_blocked: bool = False) -> None:
        cards = self.board.cards(include_archived=True)
        statuses = Counter(c.status for c in cards)
        if allow_blocked:
            assert set(statuses) <= {"done", "blocked"}, statuses
            for card in cards:
                if card.status == "blocked":
                    assert card.reason, f"card {card.id} blocked without a reason"
        else:
            assert set(statuses) == {"done"}, statuses
        for card in cards:
            runs = self.board.runs(card.id)
            # No card had two live runs at once: each run ended before the next was claimed.
            for earlier, later in itertools.pairwise(runs):
                assert earlier.ended_at is not None and earlier.ended_at <= later.claimed_at, (
                    f"card {card.id}: run {earlier.id} overlapped run {later.id}"
                )
            # Every attempt ended with an outcome; at most one run did the work.
            assert all(r.outcome for r in runs), f"card {card.id} has a run with no outcome"
            assert sum(r.outcome == "done" for r in runs) == (1 if card.status == "done" else 0)
            if card.status == "done":
                assert runs[-1].outcome == "done", f"card {card.id}: a late report was accepted"
        # Each run was ended exactly once: no late report changed an ended run.
        with self.board.engine.connect() as conn:
            ended = conn.exec_driver_sql(
                "SELECT run_id, count(*) FROM events WHERE kind = 'run_ended' GROUP BY run_id "
                "HAVING count(*) > 1"
            ).all()
        assert ended == [], f"runs ended twice: {ended}"
        path = db.sqlite_path(self.url)
        if path is not None:
            con = sqlite3.connect(path)
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            con.close()
        self.check_no_orphans()

    def check_no_orphans(self) -> None:
        try:
            wait_for_quiet(self.url, timeout=20)
        except TimeoutError:
            pytest.fail(f"processes left behind: {board_processes(self.url)}")


@pytest.fixture
def chaos(repo: Path, repo_db: str) -> Iterator[Chaos]:
    write_profile(repo, "quick", QUICK)
    board = board_in(repo, db=repo_db)
    harness = Chaos(repo, board)
    yield harness
    harness.stop()
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("KANBAN_DB") == harness.url:
                os.killpg(proc.pid, signal.SIGKILL)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    board.close()
