"""Agents as the dispatcher sees them, with small recorded stand-ins: a replayed Claude Code
stream-json transcript (summary, tokens, cost, cost caps), a noisy agent that stalls, an
agent that cannot log in, one that is rate limited. Real dispatchers, supervisors, signals."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import kanban
from kanban import processes
from kanban.testing import board_in, drain, kill_run_processes, write_profile

pytestmark = pytest.mark.slow

DATA = Path(__file__).parent / "data"
SUCCESS = DATA / "claude-stream-json-success.jsonl"
NOT_LOGGED_IN = DATA / "claude-stream-json-not-logged-in.jsonl"
TRANSCRIPT_COST = 0.0734214


@pytest.fixture
def board(repo: Path, repo_db: str) -> Iterator[kanban.Board]:
    b = board_in(repo, db=repo_db)
    yield b
    kill_run_processes(b)
    b.close()


def replay_profile(repo: Path, name: str, transcript: Path, *extra: str, keys: str = "") -> None:
    args = ", ".join(f'"{a}"' for a in ["{python}", "-m", "kanban.testing", "replay"])
    more = "".join(f', "{a}"' for a in extra)
    write_profile(
        repo,
        name,
        f'command = [{args}, "{transcript}"{more}]\n'
        'output = "claude-stream-json"\n'
        'auth_patterns = ["^Not logged in"]\n' + keys,
    )


def kanban_cli(repo: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "kanban", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def test_a_replayed_claude_run_records_its_summary_tokens_and_cost(
    repo: Path, board: kanban.Board
) -> None:
    replay_profile(repo, "claude-replay", SUCCESS)
    card = board.add("Fix the CSV parser", profile="claude-replay")
    drain(repo)
    final = board.get(card.id)
    [run] = board.runs(card.id)
    assert final.status == "done" and run.outcome == "done"
    assert final.summary is not None and final.summary.startswith("The parser now sniffs")
    assert run.summary == final.summary
    assert run.cost_usd == pytest.approx(TRANSCRIPT_COST)
    assert (run.tokens_in, run.tokens_out) == (25 + 6137 + 87644, 519)
    assert "94k in / 519 out  $0.0734" in kanban_cli(repo, "show", str(card.id))
    assert "usage: $0.0734  (1 run; 94k in / 519 out)" in kanban_cli(repo, "status")


def test_a_card_whose_cost_cap_is_below_the_runs_cost_is_stopped(
    repo: Path, board: kanban.Board
) -> None:
    # The agent stays alive after its result line, as one still working would.
    replay_profile(repo, "claude-replay", SUCCESS, "--hold", "300")
    card = board.add("Fix the CSV parser", profile="claude-replay", max_cost_usd=0.05)
    drain(repo)
    final = board.get(card.id)
    [run] = board.runs(card.id)
    assert final.status == "blocked"
    assert final.reason is not None
    assert final.reason.startswith("cost cap reached: $0.0734 of $0.05 (card 1's cap)")
    assert f"kanban cap {card.id} USD" in final.reason
    assert run.outcome == "blocked" and run.cost_usd == pytest.approx(TRANSCRIPT_COST)
    assert run.pid is not None and run.pid_started is not None
    assert processes.state(processes.Identity(run.pid, run.pid_started)) == "gone"

    # Unblocked without raising the cap: the next run stops before its agent starts.
    board.unblock(card.id)
    drain(repo)
    runs = board.runs(card.id)
    assert [r.outcome for r in runs] == ["blocked", "blocked"]
    assert runs[1].pid is None
    assert (runs[1].error or "").startswith("cost cap reached before this run started: $0.0734")

    # Raised: it runs to the end (this time the agent exits after its result line).
    replay_profile(repo, "claude-replay", SUCCESS)
    board.set_cost_cap(card.id, 1.0)
    board.unblock(card.id)
    drain(repo)
    assert board.get(card.id).status == "done"
    assert board.spend(card_ids=[card.id]).cost_usd == pytest.approx(2 * TRANSCRIPT_COST)


def test_a_profiles_cap_applies_to_each_of_its_cards_and_an_exit_over_it_blocks(
    repo: Path, board: kanban.Board
) -> None:
    replay_profile(repo, "claude-capped", SUCCESS, keys="max_cost_usd = 0.05\n")
    card = board.add("Fix it", profile="claude-capped")
    drain(repo)
    final = board.get(card.id)
    assert final.status == "blocked"
    assert final.reason is not None
    assert "cost cap reached" in final.reason and "profile claude-capped's cap" in final.reason
    assert board.runs(card.id)[0].cost_usd == pytest.approx(TRANSCRIPT_COST)


def test_an_agent_that_is_not_logged_in_is_blocked_without_a_retry(
    repo: Path, board: kanban.Board
) -> None:
    replay_profile(repo, "claude-logged-out", NOT_LOGGED_IN, "--exit", "1")
    card = board.add("Say hello", profile="claude-logged-out")
    drain(repo)
    final = board.get(card.id)
    assert final.status == "blocked" and final.attempts == 1
    assert final.reason is not None and "Not logged in · Please run /login" in final.reason
    assert [r.outcome for r in board.runs(card.id)] == ["blocked"]


NOISY = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])  # a child in its group
print("thinking about it", flush=True)
while True:
    print("ERROR: Reconnecting... waiting for network", flush=True)
    time.sleep(0.1)
"""


def test_an_agent_printing_only_noise_is_stalled_and_its_group_stopped(
    repo: Path, board: kanban.Board
) -> None:
    (repo / "noisy.py").write_text(NOISY)
    write_profile(
        repo,
        "noisy",
        f'command = ["{{python}}", "{repo / "noisy.py"}"]\nworkspace = "none"\n'
        'idle_timeout = "1s"\nnoise_patterns = ["Reconnecting\\\\.\\\\.\\\\."]\nmax_attempts = 2\n',
    )
    card = board.add("Never gets anywhere", profile="noisy")
    drain(repo)
    runs = board.runs(card.id)
    assert [r.outcome for r in runs] == ["stalled", "stalled"]
    assert all((r.error or "").startswith("stalled: no output for 1.0s") for r in runs)
    for run in runs:
        assert run.pid is not None
        assert not processes.group_members(run.pid), "the stalled agent's group survived"
    final = board.get(card.id)
    assert final.status == "blocked" and final.attempts == 2
    assert final.reason is not None and "last: stalled" in final.reason


def test_a_rate_limit_message_requeues_without_spending_an_attempt(
    repo: Path, board: kanban.Board
) -> None:
    write_profile(
        repo,
        "limited",
        'command = ["{python}", "-m", "kanban.demo_agent"]\nmax_attempts = 1\n'
        'rate_limit_patterns = ["rate limit exceeded"]\nrate_limit_cooldown = "0.2s"\n',
    )
    card = board.add("quota", profile="limited", body="demo: fail-once Error: rate limit exceeded")
    drain(repo)
    runs = board.runs(card.id)
    assert [r.outcome for r in runs] == ["rate_limited", "done"]
    assert "rate limit exceeded" in (runs[0].error or "")
    assert board.get(card.id).status == "done"


def test_a_run_that_spends_its_goals_budget_is_stopped(repo: Path, board: kanban.Board) -> None:
    from kanban import plans

    replay_profile(repo, "claude-replay", SUCCESS, "--hold", "300")
    plan = plans.parse_plan(
        '{"cards": [{"key": "a", "title": "Fix the parser", "profile": "claude-replay"}]}',
        known_profiles=["claude-replay"],
    )
    goal = board.goals.add("Parse CSV", plan=plan, auto=True, max_cost_usd=0.05)
    drain(repo)
    (card,) = board.goals.show(goal.id).cards
    assert card.status == "blocked"
    assert card.reason is not None
    assert card.reason.startswith("cost cap reached: $0.0734 of $0.05 (goal 1's budget)")
    assert board.goals.show(goal.id).spend.cost_usd == pytest.approx(TRANSCRIPT_COST)
