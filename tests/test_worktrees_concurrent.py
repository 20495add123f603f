"""Many cards starting at once on one repository: no worktree is lost to another's
`git worktree` command (a half-made worktree has no `commondir` yet, and a concurrent
`worktree list` or `prune` fails on it or removes it). Real processes, a real repository."""

from __future__ import annotations

import fcntl
import multiprocessing
import threading
from pathlib import Path

from kanban import worktrees
from kanban.testing import git, git_repo


def _start(args: tuple[str, int]) -> str | None:
    repo, card = args
    port = worktrees.Worktrees(Path(repo), root=Path(repo) / "worktrees")
    try:
        port.prepare(card, f"card {card}", [])
        if card % 3 == 0:  # some finish at once: remove and prune beside the adds
            port.remove(port.names(card, f"card {card}")[0])
    except Exception as exc:  # the test reports every failure, whatever its type
        return f"card {card}: {exc}"
    return None


def test_48_worktrees_made_by_16_processes_at_once_all_succeed(tmp_path: Path) -> None:
    failures: list[str] = []
    for round_ in range(2):
        repo = git_repo(tmp_path / f"repo{round_}")
        with multiprocessing.get_context("spawn").Pool(16) as pool:
            failures += [f for f in pool.map(_start, [(str(repo), n) for n in range(1, 49)]) if f]
        listed = git(repo, "worktree", "list", "--porcelain").count("worktree ")
        assert listed == 1 + 48 - 16  # the main checkout, and every card not removed
    assert failures == []


def test_a_worktree_command_waits_for_the_repositorys_worktree_lock(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    port = worktrees.Worktrees(repo, root=repo / "worktrees")
    done = threading.Event()
    with (repo / ".git" / "kanban-worktrees.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: (port.prepare(1, "one", []), done.set()))
        worker.start()
        assert not done.wait(0.5)  # blocked behind the lock another process holds
        fcntl.flock(held, fcntl.LOCK_UN)
    worker.join(timeout=60)
    assert done.is_set()
