"""Permanent failures block at once, with the fix in the reason: no retry can install a
program, make a script executable, give a repository its first commit or make an unusable
worktree root usable. Real `kanban dispatch --drain` processes, real git repositories."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import kanban
from kanban.testing import board_in, drain, git, kill_run_processes

pytestmark = pytest.mark.slow

SCRIPT = "#!/bin/sh\nexit 0\n"


@pytest.fixture
def board(repo: Path, repo_db: str) -> Iterator[kanban.Board]:
    b = board_in(repo, db=repo_db)
    yield b
    kill_run_processes(b)
    b.close()


def _board(cwd: Path, db: str, **overrides: str) -> kanban.Board:
    """The board at `db`, run from `cwd`, with settings a config file would give."""
    from kanban import api, settings
    from kanban.testing import fast_settings

    return api.connect(settings.load({"db": db, **fast_settings(), **overrides}, cwd=cwd))


def _blocked_once(board: kanban.Board, card_id: int) -> str:
    runs = board.runs(card_id)
    assert [r.outcome for r in runs] == ["blocked"], [(r.outcome, r.error) for r in runs]
    card = board.get(card_id)
    assert card.status == "blocked"
    assert card.reason is not None and card.reason.endswith("then `kanban unblock`")
    return card.reason


def test_a_script_that_is_not_executable_is_blocked_at_once_saying_chmod(
    repo: Path, board: kanban.Board
) -> None:
    (repo / "kanban-task").write_text(SCRIPT)  # committed, but without the executable bit
    git(repo, "add", "kanban-task")
    git(repo, "commit", "-q", "-m", "task script")
    card = board.add("run the script", profile="shell")
    drain(repo, env={"KANBAN_DB": board.url})
    reason = _blocked_once(board, card.id)
    assert "cannot execute './kanban-task'" in reason and "chmod +x ./kanban-task" in reason


def test_a_script_not_committed_is_blocked_at_once_saying_so(
    repo: Path, board: kanban.Board
) -> None:
    script = repo / "kanban-task"  # executable, but only in the main checkout
    script.write_text(SCRIPT)
    script.chmod(0o755)
    card = board.add("run the script", profile="shell")
    drain(repo, env={"KANBAN_DB": board.url})
    reason = _blocked_once(board, card.id)
    assert "command not found: './kanban-task'" in reason and "committed" in reason


def test_a_repository_without_a_commit_is_blocked_at_once_with_the_command(
    tmp_path: Path, repo_db: str, repo: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    with _board(repo, repo_db, repo=str(empty)) as b:
        card = b.add("first", profile="demo")
        drain(repo, env={"KANBAN_DB": b.url, "KANBAN_REPO": str(empty)})
        reason = _blocked_once(b, card.id)
    assert f"git -C {empty} commit --allow-empty -m 'Initial commit'" in reason
    assert "not a valid object name" not in reason


def test_a_repo_setting_that_is_no_repository_is_blocked_at_once(
    tmp_path: Path, repo_db: str, repo: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with _board(repo, repo_db, repo=str(plain)) as b:
        card = b.add("first", profile="demo")
        drain(repo, env={"KANBAN_DB": b.url, "KANBAN_REPO": str(plain)})
        reason = _blocked_once(b, card.id)
    assert f"{plain} is not a git repository; run `git init` there" in reason


def test_an_unusable_worktree_root_is_blocked_at_once(
    tmp_path: Path, repo_db: str, repo: Path
) -> None:
    root = tmp_path / "a-file"
    root.write_text("not a directory\n")
    with _board(repo, repo_db, worktree_root=str(root / "trees")) as b:
        card = b.add("first", profile="demo")
        drain(repo, env={"KANBAN_DB": b.url, "KANBAN_WORKTREE_ROOT": str(root / "trees")})
        reason = _blocked_once(b, card.id)
    assert f"the worktree root {root / 'trees'} cannot be made" in reason
    assert "worktree_root" in reason


def test_init_refuses_a_repository_without_a_commit_with_the_command(tmp_path: Path) -> None:
    import sys

    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KANBAN_")}
    result = subprocess.run(
        [sys.executable, "-m", "kanban", "init", "--json"],
        cwd=empty,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert f"git -C {empty} commit --allow-empty -m 'Initial commit'" in result.stderr
    assert not (empty / ".kanban").exists()
    git(empty, "commit", "-q", "--allow-empty", "-m", "Initial commit")  # the fix it names
    again = subprocess.run(
        [sys.executable, "-m", "kanban", "init", "--json"],
        cwd=empty,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["repo"] == str(empty)
