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


# ---------------------------------------------------------------------- several hosts


def _clones(repo: Path, tmp_path: Path) -> tuple[Worktrees, Worktrees]:
    """Two hosts' clones of one bare remote, each with card worktrees and `origin`."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(origin))
    made = []
    for name in ("host-a", "host-b"):
        path = tmp_path / name
        git(tmp_path, "clone", "-q", str(origin), str(path))
        made.append(Worktrees(path, root=path / "worktrees", remote="origin"))
    return made[0], made[1]


def _work(trees: Worktrees, card: int, title: str, parents: list[str], name: str) -> str:
    w = trees.prepare(card, title, parents)
    (w.path / name).write_text(name)
    trees.commit_all(w.path, name)
    trees.remove(w.path)
    assert w.branch is not None
    return w.branch


def test_a_pushed_branch_is_fetched_by_a_child_on_another_host(repo: Path, tmp_path: Path) -> None:
    a, b = _clones(repo, tmp_path)
    parent = _work(a, 1, "parent", [], "parent.txt")
    a.push(parent)
    assert b.fetch_parents([parent], own="kanban/2-child", wait=0) == ()
    child = b.prepare(2, "child", [parent])
    assert (child.path / "parent.txt").read_text() == "parent.txt"
    assert b.head(parent) == a.head(parent)


def test_a_stale_local_branch_is_fast_forwarded_and_a_diverged_one_kept(
    repo: Path, tmp_path: Path
) -> None:
    a, b = _clones(repo, tmp_path)
    branch = _work(a, 1, "parent", [], "one.txt")
    a.push(branch)
    b.fetch([branch])
    _work(a, 1, "parent", [], "two.txt")  # a retry on host A adds to the branch
    a.push(branch)
    b.fetch([branch])
    assert b.head(branch) == a.head(branch)  # behind: fast-forwarded
    _work(b, 1, "parent", [], "three.txt")  # host B's own commit, not on the remote
    mine = b.head(branch)
    _work(a, 1, "parent", [], "four.txt")
    a.push(branch)
    b.fetch([branch])
    assert b.head(branch) == mine  # diverged: nothing of B's is thrown away


def test_a_parent_branch_missing_everywhere_is_named(repo: Path, tmp_path: Path) -> None:
    _a, b = _clones(repo, tmp_path)
    with pytest.raises(errors.WorktreeError, match=r"kanban/1-gone .*remote 'origin'"):
        b.fetch_parents(["kanban/1-gone"], own="kanban/2-child", wait=0)
    local = Worktrees(repo, root=repo / "worktrees")  # no remote: report it, start anyway
    assert local.fetch_parents(["kanban/1-gone"], own="kanban/2-child") == ("kanban/1-gone",)


def test_a_retry_on_another_host_continues_the_cards_own_pushed_branch(
    repo: Path, tmp_path: Path
) -> None:
    a, b = _clones(repo, tmp_path)
    own = _work(a, 1, "card", [], "first-attempt.txt")
    a.push(own)
    b.fetch_parents([], own=own, wait=0)
    again = b.prepare(1, "card", [])
    assert again.reused and (again.path / "first-attempt.txt").exists()
    (again.path / "second.txt").write_text("x")
    b.commit_all(again.path, "second")
    b.push(own)  # a fast-forward of the remote's branch


def test_a_push_that_would_lose_commits_is_refused(repo: Path, tmp_path: Path) -> None:
    a, b = _clones(repo, tmp_path)
    a.push(_work(a, 1, "card", [], "a.txt"))
    branch = _work(b, 1, "card", [], "b.txt")  # B never fetched A's: the histories diverge
    with pytest.raises(errors.WorktreeError, match="git failed"):
        b.push(branch)
