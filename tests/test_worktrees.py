"""Worktrees: the same contract for the real git implementation and the fake in
kanban.testing, plus what only real git can show (merges, conflicts, dirty worktrees)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kanban import errors
from kanban.testing import FakeWorktrees, git
from kanban.worktrees import Worktrees, slug


@pytest.fixture(params=["git", "fake"])
def trees(request: pytest.FixtureRequest, repo: Path) -> Worktrees | FakeWorktrees:
    if request.param == "git":
        return Worktrees(repo, root=repo / "worktrees")
    return FakeWorktrees(repo / "worktrees")


def test_contract_names_are_id_and_slug(trees: Worktrees | FakeWorktrees, repo: Path) -> None:
    path, branch = trees.names(12, "Fix: the Parser (again)!")
    assert path == repo / "worktrees" / "12-fix-the-parser-again"
    assert branch == "kanban/12-fix-the-parser-again"


def test_contract_children_see_their_parents_work(trees: Worktrees | FakeWorktrees) -> None:
    a = trees.prepare(1, "a", [])
    (a.path / "a.txt").write_text("a")
    assert not trees.is_clean(a.path)
    assert trees.commit_all(a.path, "a") is not None
    assert trees.is_clean(a.path)
    b = trees.prepare(2, "b", [])
    (b.path / "b.txt").write_text("b")
    trees.commit_all(b.path, "b")
    c = trees.prepare(3, "c", [a.branch, b.branch])  # type: ignore[list-item]
    assert (c.path / "a.txt").exists() and (c.path / "b.txt").exists()


def test_contract_a_dirty_worktree_is_never_removed(trees: Worktrees | FakeWorktrees) -> None:
    w = trees.prepare(1, "a", [])
    (w.path / "unsaved.txt").write_text("precious")
    assert trees.remove(w.path) is False
    assert (w.path / "unsaved.txt").read_text() == "precious"
    trees.commit_all(w.path, "save")
    assert trees.remove(w.path) is True
    assert not w.path.exists()


def test_contract_a_retry_reuses_the_branch(trees: Worktrees | FakeWorktrees) -> None:
    first = trees.prepare(1, "a", [])
    (first.path / "partial.txt").write_text("half")
    trees.commit_all(first.path, "half done")
    again = trees.prepare(1, "a", [])
    assert again.reused and (again.path / "partial.txt").exists()


def test_branch_stays_after_removal(repo: Path) -> None:
    trees = Worktrees(repo, root=repo / "worktrees")
    w = trees.prepare(1, "a", [])
    (w.path / "a.txt").write_text("a")
    trees.commit_all(w.path, "a")
    trees.remove(w.path)
    assert "a.txt" in trees.files_on("kanban/1-a")
    again = trees.prepare(1, "a", [])  # recreated from the kept branch
    assert (again.path / "a.txt").exists()


def test_a_conflict_between_parents_names_the_files_and_leaves_nothing(repo: Path) -> None:
    trees = Worktrees(repo, root=repo / "worktrees")
    for card, text in ((1, "one"), (2, "two")):
        w = trees.prepare(card, f"p{card}", [])
        (w.path / "README.md").write_text(text)
        trees.commit_all(w.path, text)
    with pytest.raises(errors.MergeConflict) as caught:
        trees.prepare(3, "child", ["kanban/1-p1", "kanban/2-p2"])
    assert caught.value.files == ["README.md"]
    assert "README.md" in caught.value.message
    assert not (repo / "worktrees" / "3-child").exists()
    assert not trees.branch_exists("kanban/3-child")


def test_merge_into_stops_cleanly_at_a_conflict(repo: Path) -> None:
    trees = Worktrees(repo, root=repo / "worktrees")
    for card, name, text in ((1, "a.txt", "a"), (2, "README.md", "two"), (3, "README.md", "three")):
        w = trees.prepare(card, f"c{card}", [])
        (w.path / name).write_text(text)
        trees.commit_all(w.path, text)
    report = trees.merge_into("main", ["kanban/1-c1", "kanban/2-c2", "kanban/3-c3"])
    assert report.merged == ("kanban/1-c1", "kanban/2-c2")
    assert report.conflict == "kanban/3-c3" and report.conflict_files == ("README.md",)
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""  # no merge in progress
    again = trees.merge_into("main", ["kanban/1-c1"])
    assert again.already == ("kanban/1-c1",)


def test_slugs_are_safe_path_parts() -> None:
    assert slug("../../etc/passwd") == "etc-passwd"
    assert slug("日本語") == "card"
    assert slug("x" * 100) == "x" * 40
    assert "/" not in slug("a/b\\c") and ".." not in slug("..")


def test_not_a_git_repository(tmp_path: Path) -> None:
    with pytest.raises(errors.WorktreeError, match="not a git repository"):
        Worktrees(tmp_path, root=tmp_path / "w")
