"""What an agent may touch: its environment is an allow-list, worktrees stay inside their
root whatever the card title, board and log files are readable by their owner only, and no
card or profile text reaches a shell."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from kanban.testing import board_in, git, kanban_process, write_profile
from kanban.worktrees import Worktrees

ENV_DUMPER = """
command = ["{python}", "-c", "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))", "ENV_FILE"]
workspace = "none"
env_allow = ["HOME", "PATH", "ALLOWED_*", "ANTHROPIC_API_KEY"]
env = { FROM_PROFILE = "yes" }
"""


def _drain(repo: Path, env: dict[str, str] | None = None) -> None:
    proc = kanban_process(repo, "dispatch", "--drain", env=env)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out


@pytest.mark.slow
def test_the_agent_gets_the_allow_list_plus_its_own_kanban_variables(
    repo: Path, tmp_path: Path
) -> None:
    dump = tmp_path / "env.json"
    write_profile(repo, "envdump", ENV_DUMPER.replace("ENV_FILE", str(dump)))
    with board_in(repo) as b:
        card = b.add("show me your environment", profile="envdump")
    _drain(
        repo,
        env={
            "DISPATCHER_SECRET": "do-not-leak",
            "AWS_SECRET_ACCESS_KEY": "nope",
            "ALLOWED_ONE": "1",
            "ALLOWED_TWO": "2",
            "ANTHROPIC_API_KEY": "named-so-passed",
        },
    )
    env = json.loads(dump.read_text())
    assert "DISPATCHER_SECRET" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["ALLOWED_ONE"] == "1" and env["ALLOWED_TWO"] == "2"
    assert env["ANTHROPIC_API_KEY"] == "named-so-passed"
    assert env["FROM_PROFILE"] == "yes"
    kanban_vars = {k for k in env if k.startswith("KANBAN_")}
    assert kanban_vars == {
        "KANBAN_CARD_ID",
        "KANBAN_RUN_ID",
        "KANBAN_SOCKET",
        "KANBAN_BIN",
        "KANBAN_RUN_MARK",
        "KANBAN_WORKTREE",
        "KANBAN_BRANCH",
        "KANBAN_PROMPT_FILE",
        "KANBAN_ATTEMPT",
    }, "the dispatcher's own KANBAN_* settings (the board's URL, the token) must not leak"
    assert env["KANBAN_CARD_ID"] == str(card.id)
    # LC_CTYPE: the agent here is Python, which coerces a C locale itself (PEP 538).
    assert set(env) - kanban_vars <= {
        "HOME",
        "PATH",
        "ALLOWED_ONE",
        "ALLOWED_TWO",
        "ANTHROPIC_API_KEY",
        "FROM_PROFILE",
        "LC_CTYPE",
    }


NASTY_TITLES = [
    "../../../etc/passwd",
    "/etc/shadow",
    "a/../../b",
    "..",
    "~root/.ssh/authorized_keys",
    "refs/heads/main",
    "x" * 400,
    "名前 with émoji 🎉",
    "-rf --force",
    "@{-1}",
    "trailing.lock",
    "a..b~c^d:e?f*g[h\\i",
]


@pytest.mark.parametrize("title", NASTY_TITLES)
def test_worktree_paths_and_branches_from_titles_stay_confined(repo: Path, title: str) -> None:
    trees = Worktrees(repo, root=repo / "worktrees")
    path, branch = trees.names(7, title)
    assert path.parent == (repo / "worktrees").absolute()
    assert path.resolve().is_relative_to((repo / "worktrees").resolve())
    subprocess.run(["git", "check-ref-format", f"refs/heads/{branch}"], check=True)
    assert branch.startswith("kanban/7-")
    workspace = trees.prepare(7, title, [])
    assert workspace.path == path and path.is_dir()


@pytest.mark.slow
def test_card_text_never_reaches_a_shell(repo: Path, tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    nasty = f"$(touch {canary}); `touch {canary}`; touch {canary} && echo"
    with board_in(repo) as b:
        b.add(nasty, profile="demo", body=nasty)
        b.add("second", profile="shell", body=nasty)  # ./kanban-task does not exist: spawn fails
    (repo / "kanban-task").write_text(f'#!/bin/sh\necho "$1" > {tmp_path / "arg"}\n')
    (repo / "kanban-task").chmod(0o755)
    git(repo, "add", "kanban-task")
    git(repo, "commit", "-qm", "task script")
    _drain(repo)
    assert not canary.exists()
    with board_in(repo) as b:
        assert {c.status for c in b.cards()} == {"done"}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_board_and_log_files_are_readable_by_their_owner_only(repo: Path) -> None:
    old = os.umask(0)  # even with a permissive umask
    try:
        result = subprocess.run(
            ["kanban", "init"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PATH": f"{Path(os.sys.executable).parent}:{os.environ['PATH']}"},
        )
        assert result.returncode == 0, result.stderr
        with board_in(repo) as b:
            b.add("leave traces", profile="demo")
        _drain(repo)
    finally:
        os.umask(old)
    state = repo / ".kanban"
    assert _mode(state) == 0o700
    for path in state.rglob("*"):
        if path.is_symlink() or path.is_socket():
            continue
        expected = 0o700 if path.is_dir() else 0o600
        assert _mode(path) == expected, f"{path} is {oct(_mode(path))}"
    names = {p.name for p in state.rglob("*")}
    assert {"board.db", "logs", "runs", "prompt.md", "dispatch.lock"} <= names
    assert any(n.startswith("card-1-run-") for n in names)
