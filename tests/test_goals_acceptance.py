"""Goals with real processes: `kanban dispatch --drain`, real supervisors, and the demo agent
planning, working and judging in real worktrees."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kanban import testing
from kanban.cli import cli as kanban_cli
from kanban.testing import board_in, git

pytestmark = pytest.mark.slow


def kanban(repo: Path, *args: str) -> str:
    old = Path.cwd()
    os.chdir(repo)
    try:
        result = CliRunner().invoke(
            kanban_cli, args, catch_exceptions=False
        )  # the board is the repository's own (`.kanban/`), on either backend (see repo_db)
    finally:
        os.chdir(old)
    assert result.exit_code == 0, result.output
    return result.stdout


def drain(repo: Path) -> None:
    testing.drain(repo, "-q", "--max-workers", "3", timeout=240)


def show(repo: Path, goal: int = 1) -> dict[str, Any]:
    detail: dict[str, Any] = json.loads(kanban(repo, "goal", "show", str(goal), "--json"))
    return detail


def test_a_goal_planned_approved_worked_and_judged_over_two_turns_ends_done(
    repo: Path, repo_db: str
) -> None:
    board_in(repo, db=repo_db).close()
    objective = "Write the greeting; Write the farewell\ndemo: judge-fail-once"
    kanban(repo, "goal", "add", objective, "--planner", "demo", "--judge", "demo")

    drain(repo)  # the planner plans; its proposal waits for approval
    first = show(repo)
    assert first["goal"]["status"] == "proposed"
    proposed = [c for c in first["cards"] if c["role"] is None]
    assert [(c["title"], c["status"]) for c in proposed] == [
        ("Write the greeting", "triage"),
        ("Write the farewell", "triage"),
        ("Integrate: Write the greeting; Write the farewell", "triage"),
    ]
    assert proposed[2]["parents"] == [proposed[0]["id"], proposed[1]["id"]]

    kanban(repo, "goal", "approve", "1")
    drain(repo)  # worked, judged not done, the second turn planned
    second = show(repo)
    assert (second["goal"]["status"], second["goal"]["turn"]) == ("proposed", 2), [
        (c["id"], c["title"], c["status"], c["role"], c["reason"]) for c in second["cards"]
    ]
    assert second["turns"][0]["verdict"] == {
        "done": False,
        "reason": "the demo judge was asked to find turn 1 not done",
    }

    kanban(repo, "goal", "approve", "1")
    drain(repo)
    final = show(repo)
    assert final["goal"]["status"] == "done"
    assert [t["number"] for t in final["turns"]] == [1, 2]
    assert [t["verdict"]["done"] for t in final["turns"]] == [False, True]
    assert final["turns"][1]["feedback"] == "the demo judge was asked to find turn 1 not done"
    assert {c["status"] for c in final["cards"]} == {"done"}
    assert final["progress"] == {"done": 4, "total": 4}
    # The last judge's branch holds the work of every card of the goal.
    judge = next(c for c in final["cards"] if c["id"] == final["turns"][1]["judge_card"])
    files = git(repo, "ls-tree", "-r", "--name-only", judge["branch"]).splitlines()
    work = [c for c in final["cards"] if c["role"] is None]
    assert all(any(f.startswith(f"cards/{c['id']}-") for f in files) for c in work)


def test_a_planner_writing_a_cyclic_plan_fails_with_the_reason_and_makes_no_card(
    repo: Path, repo_db: str
) -> None:
    board_in(repo, db=repo_db).close()
    kanban(repo, "goal", "add", "Ship it\ndemo: plan-cycle", "--planner", "demo")
    drain(repo)  # three attempts, each refused, then the planner card is blocked
    detail = show(repo)
    (planner,) = detail["cards"]
    assert planner["role"] == "planner" and planner["status"] == "blocked"
    runs = json.loads(kanban(repo, "runs", str(planner["id"]), "--json"))
    assert [r["outcome"] for r in runs] == ["failed", "failed", "failed"]
    for run in runs:
        assert run["error"] == (
            "plan refused: the plan's `after` links form a cycle: "
            "design after check after build after design"
        )
    assert detail["goal"]["status"] == "planning"
    assert detail["progress"] == {"total": 0}
