"""The dispatcher with real processes: `kanban dispatch` subprocesses, real supervisors, the
demo agent doing real git work, and real signals (kill -9, SIGSTOP, SIGTERM)."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import kanban
from kanban.board import releases
from kanban.testing import (
    FAST,
    board_in,
    git,
    kanban_process,
    kill_run_processes,
    pid_alive,
    wait_for,
    write_profile,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def board(repo: Path, repo_db: str) -> Iterator[kanban.Board]:
    b = board_in(repo, db=repo_db)
    yield b
    kill_run_processes(b)
    b.close()


@pytest.fixture
def dispatchers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        if proc.stdout is not None and not proc.stdout.closed:
            proc.communicate()  # also closes the pipes
        proc.wait()


def _dispatch(
    board: kanban.Board, started: list[subprocess.Popen[str]], *args: str
) -> subprocess.Popen[str]:
    assert board.settings.repo is not None
    proc = kanban_process(board.settings.repo, "dispatch", *args, env={"KANBAN_DB": board.url})
    started.append(proc)
    return proc


def _finish(proc: subprocess.Popen[str], timeout: float = 180) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def _live_run(board: kanban.Board, card_id: int) -> kanban.views.RunView:  # type: ignore[name-defined]
    def started() -> object:
        runs = [r for r in board.runs(card_id) if r.outcome is None and r.pid]
        return runs[0] if runs else None

    return wait_for(started, timeout=60, what=f"card {card_id}'s agent to start")  # type: ignore[no-any-return]


def _ancestors(parents: dict[int, list[int]], card: int) -> set[int]:
    seen: set[int] = set()
    stack = list(parents[card])
    while stack:
        p = stack.pop()
        if p not in seen:
            seen.add(p)
            stack.extend(parents[p])
    return seen


def test_a_30_card_graph_drains_and_work_flows_down_the_graph(
    repo: Path, board: kanban.Board, dispatchers: list[subprocess.Popen[str]]
) -> None:
    rng = random.Random(7)
    ids: list[int] = []
    parents: dict[int, list[int]] = {}
    for i in range(30):
        chosen = sorted(set(rng.sample(ids, k=min(len(ids), rng.choice([0, 1, 1, 2, 2, 3])))))
        card = board.add(f"card number {i}", profile="demo", parents=chosen)
        ids.append(card.id)
        parents[card.id] = chosen
    _finish(_dispatch(board, dispatchers, "--drain", "--max-workers", "4"))

    cards = {c.id: c for c in board.cards()}
    assert {c.status for c in cards.values()} == {"done"}
    for card_id, card in cards.items():
        runs = board.runs(card_id)
        assert [r.outcome for r in runs] == ["done"], f"card {card_id}: {runs}"
        bid = board.tx.read(releases.board_id)
        assert card.branch == f"kanban/{card_id}-card-number-{card_id - 1}-{bid}"
        files = set(git(repo, "ls-tree", "-r", "--name-only", card.branch).splitlines())
        for ancestor in _ancestors(parents, card_id) | {card_id}:
            assert f"cards/{ancestor}-card-number-{ancestor - 1}.md" in files, (card_id, ancestor)
    worktrees = repo / "worktrees"
    leftover = [p for p in worktrees.iterdir()] if worktrees.exists() else []
    for path in leftover:
        assert git(path, "status", "--porcelain") == "", f"{path} is dirty"


def test_handoffs_do_not_wait_for_the_periodic_tick(
    repo: Path, board: kanban.Board, dispatchers: list[subprocess.Popen[str]]
) -> None:
    previous: list[int] = []
    for i in range(5):
        previous = [board.add(f"step {i}", profile="demo", parents=previous).id]
    # An hour between periodic ticks: only wake-ups can carry the chain to its end.
    _finish(_dispatch(board, dispatchers, "--drain", "--interval", "1h"), timeout=120)
    assert {c.status for c in board.cards()} == {"done"}


def test_kill_9_of_an_agent_crashes_the_run_and_the_retry_finishes(
    repo: Path, board: kanban.Board, dispatchers: list[subprocess.Popen[str]]
) -> None:
    card = board.add("victim", profile="demo", body="demo: hang-once")
    proc = _dispatch(board, dispatchers, "--drain")
    run = _live_run(board, card.id)
    assert run.pid is not None
    os.kill(run.pid, signal.SIGKILL)
    _finish(proc)
    runs = board.runs(card.id)
    assert [r.outcome for r in runs] == ["crashed", "done"]
    assert "SIGKILL" in (runs[0].error or "")
    assert board.get(card.id).status == "done"


def test_kill_9_of_the_dispatcher_leaves_agents_running_and_a_restart_drains(
    repo: Path, board: kanban.Board, dispatchers: list[subprocess.Popen[str]]
) -> None:
    ids = [board.add(f"slow {i}", profile="demo", body="demo: sleep 2").id for i in range(6)]
    first = _dispatch(board, dispatchers, "--max-workers", "3")
    wait_for(
        lambda: len([r for r in board.status().running if r.pid]) == 3,
        timeout=60,
        what="three agents running",
    )
    agents = [r.pid for r in board.status().running]
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert all(pid is not None and pid_alive(pid) for pid in agents), (
        "agents died with the dispatcher"
    )
    _finish(_dispatch(board, dispatchers, "--drain", "--max-workers", "3"))
    for card_id in ids:
        runs = board.runs(card_id)
        assert [r.outcome for r in runs] == ["done"], (card_id, runs)
    # Nothing ran twice at the same time: per card, run intervals never overlap.
    for card_id in ids:
        spans = sorted((r.claimed_at, r.ended_at) for r in board.runs(card_id))
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end is not None and end <= start


def test_a_hung_supervisor_is_reclaimed_after_the_ttl_and_its_group_killed(
    repo: Path, board: kanban.Board, dispatchers: list[subprocess.Popen[str]]
) -> None:
    card = board.add("hangs", profile="demo", body="demo: hang-once")
    proc = _dispatch(board, dispatchers, "--drain")
    run = _live_run(board, card.id)
    assert run.pid is not None and run.supervisor_pid is not None
    os.kill(run.supervisor_pid, signal.SIGSTOP)  # no more heartbeats; the agent hangs on
    _finish(proc)
    runs = board.runs(card.id)
    assert [r.outcome for r in runs] == ["reclaimed", "done"]
    assert "lease expired" in (runs[0].error or "")
    assert not pid_alive(run.pid), "the hung agent survived the reclaim"
    assert not pid_alive(run.supervisor_pid), "the frozen supervisor survived the reclaim"


def test_a_missing_agent_binary_is_blocked_at_once_naming_it(
    repo: Path, board: kanban.Board, dispatchers: list[subprocess.Popen[str]]
) -> None:
    """A permanent error: no retry can install the program, so no backoff is waited out."""
    write_profile(
        repo,
        "ghost",
        'command = ["kanban-test-no-such-agent", "{prompt_file}"]\nmax_attempts = 2\n',
    )
    card = board.add("never runs", profile="ghost")
    _finish(_dispatch(board, dispatchers, "--drain", "--ok-if-blocked"))
    runs = board.runs(card.id)
    assert [r.outcome for r in runs] == ["blocked"]
    assert "kanban-test-no-such-agent" in (runs[0].error or "")
    final = board.get(card.id)
    assert final.status == "blocked"
    assert final.reason is not None and "kanban-test-no-such-agent" in final.reason
    assert "install it or fix `command`" in final.reason and "kanban unblock" in final.reason


def test_a_rate_limit_exit_requeues_without_spending_an_attempt(
    repo: Path, board: kanban.Board, dispatchers: list[subprocess.Popen[str]]
) -> None:
    write_profile(
        repo,
        "limited",
        'command = ["{python}", "-m", "kanban.demo_agent"]\n'
        'max_attempts = 1\nrate_limit_cooldown = "0.2s"\n',
    )
    card = board.add("quota", profile="limited", body="demo: exit-once 75")
    _finish(_dispatch(board, dispatchers, "--drain"))
    runs = board.runs(card.id)
    assert [r.outcome for r in runs] == ["rate_limited", "done"]  # one attempt, not spent
    assert board.get(card.id).status == "done"


def test_two_dispatch_once_at_the_same_time_never_exceed_capacity(
    repo: Path, board: kanban.Board
) -> None:
    for i in range(6):
        board.add(f"parallel {i}", profile="demo", body="demo: sleep 2")
    procs = [
        kanban_process(
            repo,
            "dispatch",
            "--once",
            "-q",
            "--max-workers",
            "2",
            "--json",
            env={"KANBAN_DB": board.url},
        )
        for _ in range(2)
    ]
    reports = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    claimed = [c for r in reports for c in r["claimed"]]
    assert len(claimed) == len(set(claimed)) == 2
    assert len(board.status().running) == 2
    wait_for(lambda: not board.status().running, timeout=60, what="the runs to end")


def test_sigterm_stops_the_dispatcher_and_leaves_its_agent_to_finish(
    repo: Path, board: kanban.Board, dispatchers: list[subprocess.Popen[str]]
) -> None:
    card = board.add("keeps going", profile="demo", body="demo: sleep 2")
    proc = _dispatch(board, dispatchers)
    run = _live_run(board, card.id)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert run.pid is not None and pid_alive(run.pid)
    wait_for(lambda: board.get(card.id).status == "done", timeout=60, what="the orphaned run")
    assert [r.outcome for r in board.runs(card.id)] == ["done"]


def test_the_demo_runs_to_completion(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kanban", "demo", "--no-live", "--json", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={k: v for k, v in os.environ.items() if k not in FAST},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["done"] == summary["cards"] >= 9
    assert summary["failed_attempts_retried"] == 1
    assert len(summary["branches"]) == summary["cards"]
