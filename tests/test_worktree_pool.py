"""The worktree pool (setting `reuse_worktrees = true`): a done card's clean tree is reset for
the next card, and that card sees nothing of the earlier one; dirty trees are never reused,
concurrent starts never share a tree, `kanban gc` empties the pool."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kanban import errors, maintenance, worktree_pool, worktrees
from kanban.testing import board_in, drain, git, write_profile


@pytest.fixture
def big(repo: Path) -> Path:
    """A repository with two directories, an ignore rule and a second commit on main."""
    for name in ("src/a/one.py", "src/b/two.py", "docs/guide.md"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(f"# {name}\n")
    (repo / ".gitignore").write_text("build/\n*.pyc\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a tree with parts")
    return repo


def _pooled(repo: Path, root: Path) -> tuple[worktrees.Worktrees, worktree_pool.Pool]:
    trees = worktrees.Worktrees(repo, root=root)
    trees.pool = pool = worktree_pool.Pool(trees, limit=4)
    return trees, pool


def _finish(trees: worktrees.Worktrees, card_id: int, title: str) -> Path:
    """A card that committed work and left ignored files (a build, caches) behind."""
    space = trees.prepare(card_id, title, [])
    (space.path / "src" / "a" / "one.py").write_text("changed by the earlier card\n")
    (space.path / "secret.txt").write_text("the earlier card's own file\n")
    git(space.path, "add", "-A")
    git(space.path, "commit", "-q", "-m", "earlier card's work")
    (space.path / "build").mkdir()
    (space.path / "build" / "out.bin").write_text("ignored output")
    (space.path / "src" / "a" / "one.pyc").write_text("ignored cache")
    return space.path


def test_a_reused_tree_is_clean_at_the_base_on_the_cards_branch(big: Path, tmp_path: Path) -> None:
    trees, pool = _pooled(big, tmp_path / "wt")
    earlier = _finish(trees, 1, "earlier")
    earlier_branch = trees.names(1, "earlier")[1]
    earlier_head = git(earlier, "rev-parse", "HEAD")
    assert pool.put(earlier)
    assert not earlier.exists() and len(pool.pooled()) == 1
    # The earlier card's branch keeps its work and is free (no worktree has it).
    assert git(big, "rev-parse", earlier_branch) == earlier_head
    assert earlier_branch not in trees.worktrees_all().values()

    space = trees.prepare(2, "later", [])
    path, branch = trees.names(2, "later")
    assert space.pooled and space.path == path and space.branch == branch
    assert pool.pooled() == []
    assert git(path, "rev-parse", "--abbrev-ref", "HEAD") == branch
    assert git(path, "rev-parse", "HEAD") == git(big, "rev-parse", "main")
    assert git(path, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
    assert not (path / "secret.txt").exists() and not (path / "build").exists()
    assert not (path / "src" / "a" / "one.pyc").exists()
    assert (path / "src" / "a" / "one.py").read_text() == "# src/a/one.py\n"
    assert trees.worktrees_all()[path] == branch


def test_a_child_reuses_a_tree_at_its_parents_branch(big: Path, tmp_path: Path) -> None:
    trees, pool = _pooled(big, tmp_path / "wt")
    parent = _finish(trees, 1, "parent")
    parent_branch = trees.names(1, "parent")[1]
    assert pool.put(parent)
    space = trees.prepare(2, "child", [parent_branch])
    assert space.pooled and space.base == parent_branch
    assert git(space.path, "rev-parse", "HEAD") == git(big, "rev-parse", parent_branch)
    assert (space.path / "secret.txt").exists()  # the parent's committed work, as it should
    assert not (space.path / "build").exists()


@pytest.mark.parametrize("dirt", ["untracked", "modified", "staged"])
def test_a_dirty_tree_never_enters_the_pool(big: Path, tmp_path: Path, dirt: str) -> None:
    trees, pool = _pooled(big, tmp_path / "wt")
    path = trees.prepare(1, "dirty", []).path
    if dirt == "untracked":
        (path / "notes.txt").write_text("unsaved")
    else:
        (path / "README.md").write_text("unsaved edit\n")
        if dirt == "staged":
            git(path, "add", "README.md")
    assert not pool.put(path)
    assert path.is_dir() and pool.pooled() == []
    assert not trees.prepare(2, "next", []).pooled


def test_a_tree_changed_in_the_pool_is_not_reused_and_gc_keeps_it(
    big: Path, tmp_path: Path
) -> None:
    with board_in(big, worktree_root=str(tmp_path / "wt")) as b:
        trees, pool = _pooled(big, b.settings.worktrees)
        assert pool.put(_finish(trees, 1, "earlier"))
        (slot,) = pool.pooled()
        (slot / "planted.txt").write_text("written while pooled")
        space = trees.prepare(2, "later", [])
        assert not space.pooled and not (space.path / "planted.txt").exists()
        report = maintenance.gc(b)
    assert report["pool_removed"] == [] and str(slot) in report["kept"]
    assert (slot / "planted.txt").exists()


def test_the_pool_holds_at_most_its_limit(big: Path, tmp_path: Path) -> None:
    trees, pool = _pooled(big, tmp_path / "wt")
    pool.limit = 2
    paths = [trees.prepare(n, f"card {n}", []).path for n in range(1, 4)]
    assert [pool.put(p) for p in paths] == [True, True, False]
    assert paths[2].is_dir() and len(pool.pooled()) == 2


def test_sparse_patterns_follow_the_card(big: Path, tmp_path: Path) -> None:
    trees, pool = _pooled(big, tmp_path / "wt")
    assert pool.put(trees.prepare(1, "full", []).path)
    sparse = trees.prepare(2, "sparse", [], sparse=["src/a/**"])
    assert sparse.pooled
    assert (sparse.path / "src" / "a" / "one.py").exists()
    assert not (sparse.path / "src" / "b").exists() and not (sparse.path / "docs").exists()
    assert (sparse.path / "README.md").exists()
    assert pool.put(sparse.path)
    full = trees.prepare(3, "full again", [])
    assert full.pooled
    assert (full.path / "src" / "b" / "two.py").exists() and (full.path / "docs").is_dir()
    assert git(full.path, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""


STARTER = """\
import json, sys
from pathlib import Path
from kanban import worktree_pool, worktrees
repo, root, card = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
trees = worktrees.Worktrees(repo, root=root)
trees.pool = worktree_pool.Pool(trees, limit=8)
sys.stdin.readline()  # every starter waits here, then all go at once
space = trees.prepare(card, f"card {card}", [])
print(json.dumps({"path": str(space.path), "branch": space.branch, "pooled": space.pooled}))
"""


def test_concurrent_starts_never_hand_one_tree_to_two_cards(big: Path, tmp_path: Path) -> None:
    root = tmp_path / "wt"
    trees, pool = _pooled(big, root)
    pool.limit = 8
    plain = worktrees.Worktrees(big, root=root)  # three cards finish side by side
    for path in [_finish(plain, n, f"done {n}") for n in range(1, 4)]:
        assert pool.put(path)
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, str(big), str(root), str(card)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for card in range(10, 16)
    ]
    for proc in starters:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    spaces = [json.loads(proc.communicate(timeout=120)[0]) for proc in starters]
    assert all(proc.returncode == 0 for proc in starters)
    assert sum(s["pooled"] for s in spaces) == 3 and pool.pooled() == []
    registered = trees.worktrees_all()
    assert len({s["path"] for s in spaces}) == 6
    for space in spaces:
        path = Path(space["path"])
        assert registered[path] == space["branch"]
        assert git(path, "rev-parse", "--abbrev-ref", "HEAD") == space["branch"]
        assert git(path, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""


def test_gc_removes_pooled_trees(big: Path, tmp_path: Path) -> None:
    with board_in(big, worktree_root=str(tmp_path / "wt")) as b:
        trees, pool = _pooled(big, b.settings.worktrees)
        assert pool.put(_finish(trees, 1, "earlier"))
        (slot,) = pool.pooled()
        dry = maintenance.gc(b, dry_run=True)
        assert dry["pool_removed"] == [str(slot)] and slot.is_dir()
        report = maintenance.gc(b)
    assert report["pool_removed"] == [str(slot)] and not slot.exists()
    assert slot not in trees.worktrees_all()
    assert git(big, "rev-parse", trees.names(1, "earlier")[1])  # the branch stays


WRITER = """\
import os, pathlib
seen = sorted(str(p) for p in pathlib.Path('.').rglob('*') if p.is_file() and '.git' not in p.parts)
pathlib.Path('seen.json').write_text(__import__('json').dumps(seen))
pathlib.Path('build').mkdir(exist_ok=True)
pathlib.Path('build/leftover.bin').write_text(os.environ['KANBAN_CARD_ID'])
"""


def test_the_dispatcher_reuses_a_done_cards_tree_for_the_next(big: Path) -> None:
    (big / "write.py").write_text(WRITER)
    git(big, "add", "write.py")
    git(big, "commit", "-q", "-m", "the agent")
    write_profile(
        big, "writer", f'command = ["{sys.executable}", "{big / "write.py"}"]\nprompt = "stdin"\n'
    )
    board_in(big).close()
    with (big / ".kanban" / "config.toml").open("a") as config:
        config.write("reuse_worktrees = true\n")
    with board_in(big) as b:
        assert b.settings.reuse_worktrees
        first = b.add("first", profile="writer")
        drain(big)
        second = b.add("second", profile="writer")
        drain(big)
        runs = b.runs(second.id)
        branch = b.get(second.id).branch
    assert branch is not None and runs[-1].log_path is not None
    assert "a pooled tree, reset" in Path(runs[-1].log_path).read_text()
    seen = json.loads(git(big, "show", f"{branch}:seen.json"))
    assert "build/leftover.bin" not in seen  # the first card's ignored output is gone
    assert "seen.json" not in seen  # and so are its committed files: this is main's tree
    pool = worktree_pool.Pool(worktrees.Worktrees(big, root=big / "worktrees"))
    assert len(pool.pooled()) == 1  # the second card's tree, back in the pool
    assert first.id != second.id


def test_a_card_sent_back_gets_a_pooled_tree_on_its_own_branch(big: Path, tmp_path: Path) -> None:
    trees, pool = _pooled(big, tmp_path / "wt")
    other = worktrees.Worktrees(big, root=tmp_path / "wt")  # finished without the pool
    mine = _finish(other, 1, "mine")
    head = git(mine, "rev-parse", "HEAD")
    assert pool.put(_finish(other, 2, "someone else"))
    other.remove(mine)  # card 1 was done and its tree removed; now it runs again
    space = trees.prepare(1, "mine", [])
    assert space.reused and space.path == mine
    assert git(mine, "rev-parse", "--abbrev-ref", "HEAD") == trees.names(1, "mine")[1]
    assert git(mine, "rev-parse", "HEAD") == head  # its own work, nobody else's
    assert (mine / "secret.txt").read_text() == "the earlier card's own file\n"
    assert git(mine, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
    assert pool.pooled() == []


def test_a_tree_git_will_not_move_stays_on_its_branch(
    big: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trees, pool = _pooled(big, tmp_path / "wt")
    path = trees.prepare(1, "stays", []).path
    real = trees.command

    def refusing(*args: str, cwd: Path | None = None) -> str:
        if args[:2] == ("worktree", "move"):
            raise errors.WorktreeError("git failed (worktree move): refused")
        return real(*args, cwd=cwd)

    monkeypatch.setattr(trees, "command", refusing)
    assert not pool.put(path)
    assert git(path, "rev-parse", "--abbrev-ref", "HEAD") == trees.names(1, "stays")[1]
    assert trees.worktrees_all()[path] == trees.names(1, "stays")[1]


def test_stray_directories_in_the_pool_are_neither_handed_out_nor_in_the_way(
    big: Path, tmp_path: Path
) -> None:
    trees, pool = _pooled(big, tmp_path / "wt")
    path = trees.prepare(1, "nested", []).path
    pool.dir.mkdir(parents=True)
    for n in range(3):  # not worktrees: never listed, never taken
        (pool.dir / f"tree-{n}").mkdir()
    assert pool.put(path)
    (slot,) = pool.pooled()
    assert slot.parent == pool.dir and (slot / "README.md").exists()
    assert not trees.prepare(2, "next", []).pooled or not slot.exists()
    assert all((pool.dir / f"tree-{n}").is_dir() for n in range(3))
