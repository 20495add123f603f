"""A supervisor with a `remote` (several hosts): it pushes a done card's branch before it
records the run done, and a push the remote refuses fails the attempt instead of hiding the
work from other hosts. The supervisor runs in this process; the agent is a real process."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

import kanban
from kanban import supervisor
from kanban.testing import board_in, git, write_profile


@pytest.fixture
def origin(repo: Path, tmp_path: Path) -> Path:
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    write_profile(repo, "touch", 'command = ["touch", "work.txt"]\n')
    return bare


def _hook(origin: Path, board_url: str, seen: Path, *, refuse: bool) -> None:
    """A pre-receive hook that records what the board says about card 1 as the push arrives."""
    hook = origin / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        f"'{sys.executable}' -m kanban --db '{board_url}' runs 1 --json > '{seen}'\n"
        f"exit {1 if refuse else 0}\n"
    )
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)


def _run_once(b: kanban.Board) -> None:
    card = b.add("publish me", profile="touch", max_attempts=1)
    claim = b.claim(card_id=card.id)
    assert claim is not None
    sup = supervisor.Supervisor(b, card_id=card.id, run_id=claim.run_id, token=claim.token)
    assert sup.run() == 0


def test_a_done_branch_is_on_the_remote_before_the_run_is_done(
    repo: Path, repo_db: str, origin: Path, tmp_path: Path
) -> None:
    seen = tmp_path / "seen.json"
    _hook(origin, repo_db, seen, refuse=False)
    with board_in(repo, db=repo_db, remote="origin") as b:
        _run_once(b)
        (run,) = b.runs(1)
        branch = b.get(1).branch
    assert run.outcome == "done"
    assert [r["outcome"] for r in json.loads(seen.read_text())] == [None]  # pushed first
    assert branch is not None
    assert git(origin, "rev-parse", branch) == git(repo, "rev-parse", branch)
    assert "work.txt" in git(origin, "ls-tree", "--name-only", branch).splitlines()


def test_a_refused_push_fails_the_attempt_and_keeps_the_work_here(
    repo: Path, repo_db: str, origin: Path, tmp_path: Path
) -> None:
    _hook(origin, repo_db, tmp_path / "seen.json", refuse=True)
    with board_in(repo, db=repo_db, remote="origin") as b:
        _run_once(b)
        (run,) = b.runs(1)
        card = b.get(1)
    assert run.outcome == "failed"
    assert run.error is not None and run.error.startswith("the agent finished but pushing")
    assert card.status == "blocked"  # its one attempt is spent; a person decides
    assert card.branch is not None
    assert "work.txt" in git(repo, "ls-tree", "--name-only", card.branch).splitlines()
