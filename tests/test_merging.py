"""The base branch recorded at init, `kanban merge` (fast-forward, --dry-run, conflicts that
say how to resolve them) and `gc --branches`. Real git repositories; the board scenarios run
real dispatchers with the demo agent on both backends."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import kanban
from kanban import errors, merging
from kanban.testing import board_in, drain, git, kanban_process, kill_run_processes
from kanban.worktrees import Worktrees


def _refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def _branch_with(trees: Worktrees, card: int, files: dict[str, str], parents: list[str]) -> str:
    w = trees.prepare(card, f"c{card}", parents)
    for name, text in files.items():
        (w.path / name).write_text(text)
    trees.commit_all(w.path, f"card {card}")
    trees.remove(w.path)
    assert w.branch is not None
    return w.branch


# ------------------------------------------------------------------ merge_into and simulate


def test_a_linear_chain_fast_forwards_and_makes_no_merge_commit(repo: Path) -> None:
    trees = Worktrees(repo, root=repo / "worktrees")
    one = _branch_with(trees, 1, {"a.txt": "a"}, [])
    two = _branch_with(trees, 2, {"b.txt": "b"}, [one])
    three = _branch_with(trees, 3, {"c.txt": "c"}, [two])
    predicted = merging.simulate(trees, "main", [one, two, three])
    report = trees.merge_into("main", [one, two, three])
    assert report.merged == report.fast_forwarded == (one, two, three) == predicted.merged
    assert predicted.fast_forwarded == report.fast_forwarded
    assert git(repo, "rev-list", "--merges", "main") == ""
    assert trees.head("main") == trees.head(three)


def test_dry_run_predicts_merges_and_the_conflict_and_changes_nothing(repo: Path) -> None:
    trees = Worktrees(repo, root=repo / "worktrees")
    a = _branch_with(trees, 1, {"a.txt": "a"}, [])
    b = _branch_with(trees, 2, {"b.txt": "b"}, [])  # not a descendant of a: a merge commit
    c = _branch_with(trees, 3, {"a.txt": "other"}, [])  # conflicts with a, once a is in
    before, status = _refs(repo), git(repo, "status", "--porcelain")
    predicted = merging.simulate(trees, "main", [a, b, c])
    assert (_refs(repo), git(repo, "status", "--porcelain")) == (before, status)
    assert not (repo / "worktrees").exists() or not any((repo / "worktrees").iterdir())
    assert predicted.merged == (a, b) and predicted.fast_forwarded == (a,)
    assert predicted.conflict == c and predicted.conflict_files == ("a.txt",)
    real = trees.merge_into("main", [a, b, c])
    assert (real.merged, real.fast_forwarded, real.conflict, real.conflict_files) == (
        predicted.merged,
        predicted.fast_forwarded,
        predicted.conflict,
        predicted.conflict_files,
    )


def test_the_conflict_commands_resolve_it_and_merge_carries_on(repo: Path, tmp_path: Path) -> None:
    trees = Worktrees(repo, root=repo / "worktrees")
    a = _branch_with(trees, 1, {"a.txt": "a"}, [])
    c = _branch_with(trees, 2, {"a.txt": "other"}, [])
    git(repo, "switch", "-q", "-c", "topic")  # main is checked out nowhere
    report = trees.merge_into("main", [a, c])
    steps = merging.conflict_commands(trees, report)
    holder = repo / "worktrees" / "merge-main"
    assert steps[0] == f"git -C {repo} worktree add {holder} main"
    assert steps[1] == f"git -C {holder} merge {c}"
    assert steps[-2] == f"git -C {repo} worktree remove {holder}"
    assert steps[-1].startswith("kanban merge")
    for step in steps:  # follow them as a person would, resolving the file by hand
        if step.startswith("# edit"):
            (holder / "a.txt").write_text("resolved\n")
        elif step.startswith("git "):
            subprocess.run(step, shell=True, check=step != steps[1], capture_output=True)
    assert trees.merge_into("main", [a, c]).already == (a, c)
    assert git(repo, "show", "main:a.txt") == "resolved"


def test_removable_branches_keeps_unmerged_and_checked_out_ones(repo: Path) -> None:
    trees = Worktrees(repo, root=repo / "worktrees")
    merged = _branch_with(trees, 1, {"a.txt": "a"}, [])
    trees.merge_into("main", [merged])
    unmerged = _branch_with(trees, 2, {"b.txt": "b"}, [])
    live = trees.prepare(3, "c3", []).branch
    assert live is not None
    gone, kept = merging.removable_branches(trees, "main", [merged, unmerged, live])
    assert gone == [merged]
    assert kept == {
        unmerged: "has commits main lacks (`kanban merge` first)",
        live: "checked out in a worktree (kanban gc removes a clean one first)",
    }


# ------------------------------------------------------------------ init --base


def _init(repo: Path, db: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = kanban_process(
        repo, "init", "--json", *args, env={"KANBAN_DB": db}, stderr=subprocess.PIPE
    )
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_init_records_the_current_branch_or_base(repo: Path, repo_db: str) -> None:
    git(repo, "branch", "release")
    refused = _init(repo, repo_db, "--base", "nope")
    assert refused.returncode == 2
    assert "--base 'nope': no such branch in" in refused.stderr
    done = _init(repo, repo_db, "--base", "release")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["base"] == "release"
    with board_in(repo, db=repo_db) as b:
        assert b.settings.base_branch == "release"
    clash = _init(repo, repo_db, "--base", "main")
    assert clash.returncode == 2 and "this board's base branch is 'release'" in clash.stderr
    assert json.loads(_init(repo, repo_db).stdout)["base"] == "release"  # again: harmless


# ------------------------------------------------------------------ on a board, end to end


@pytest.fixture
def board(repo: Path, repo_db: str) -> Iterator[kanban.Board]:
    assert _init(repo, repo_db).returncode == 0  # records main
    git(repo, "switch", "-q", "-c", "topic")  # what is checked out no longer matters
    (repo / "topic.txt").write_text("topic only\n")
    git(repo, "add", "topic.txt")
    git(repo, "commit", "-q", "-m", "topic work")
    b = board_in(repo, db=repo_db)
    yield b
    kill_run_processes(b)
    b.close()


def _kanban(repo: Path, *args: str) -> tuple[int, str, str]:
    proc = kanban_process(repo, *args, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


@pytest.mark.slow
def test_cards_start_from_and_merge_into_the_recorded_base(repo: Path, board: kanban.Board) -> None:
    one = board.add("one", profile="demo")
    two = board.add("two", profile="demo", parents=[one.id])
    left = board.add("left", profile="demo", body="demo: touch README.md")
    right = board.add("right", profile="demo", body="demo: touch README.md")
    drain(repo, env={"KANBAN_DB": board.url})
    branches = {c: board.get(c).branch for c in (one.id, two.id, left.id, right.id)}
    assert "topic.txt" not in git(repo, "ls-tree", "--name-only", str(branches[one.id]))
    topic_before = git(repo, "rev-parse", "topic")

    before = _refs(repo)
    code, out, err = _kanban(repo, "merge", "--dry-run", "--json")
    assert _refs(repo) == before  # a dry run changes no branch
    dry = json.loads(out)
    assert code == 1 and dry["target"] == "main" and dry["dry_run"] is True

    code, out, err = _kanban(repo, "merge")
    assert code == 1
    assert f"merged {branches[one.id]} into main (fast-forward)" in out
    assert f"merged {branches[two.id]} into main (fast-forward)" in out
    assert dry["merged"] == [branches[one.id], branches[two.id], branches[left.id]]
    assert f"stopped: {branches[right.id]} conflicts with main in README.md" in err
    assert f"git -C {repo}/worktrees/merge-main merge {branches[right.id]}" in err
    assert git(repo, "rev-parse", "topic") == topic_before  # the checkout was not merged into

    code, out, err = _kanban(repo, "gc", "--branches", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert sorted(report["branches_removed"]) == sorted(
        str(branches[c]) for c in (one.id, two.id, left.id)
    )
    assert report["branches_kept"] == {
        str(branches[right.id]): "has commits main lacks (`kanban merge` first)"
    }
    assert git(repo, "branch", "--list", "kanban/*").split() == [str(branches[right.id])]


def test_merge_refuses_an_unknown_target(repo: Path, board: kanban.Board) -> None:
    code, _, err = _kanban(repo, "merge", "--into", "nope")
    assert code == errors.WorktreeError.exit_code
    assert "target branch 'nope' does not exist" in err


def test_a_parents_conflict_says_how_to_make_the_cards_branch_by_hand(repo: Path) -> None:
    trees = Worktrees(repo, root=repo / "worktrees")
    one = _branch_with(trees, 1, {"README.md": "one"}, [])
    two = _branch_with(trees, 2, {"README.md": "two"}, [])
    with pytest.raises(errors.MergeConflict) as caught:
        trees.prepare(3, "child", [one, two])
    path = repo / "worktrees" / "3-child"
    message = caught.value.message
    assert f"({two} into {one}) in: README.md" in message
    add = f"git -C {repo} worktree add -b kanban/3-child {path} {one}"
    assert add in message and f"git -C {path} merge {two}" in message
    assert message.endswith("then `kanban unblock 3`")
    subprocess.run(add.split(), check=True, capture_output=True)  # the person's fix
    subprocess.run(["git", "-C", str(path), "merge", two], check=False, capture_output=True)
    (path / "README.md").write_text("both\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "--no-edit")
    again = trees.prepare(3, "child", [one, two])  # the next attempt works on that branch
    assert again.reused and (again.path / "README.md").read_text() == "both\n"
