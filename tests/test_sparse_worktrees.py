"""Sparse worktrees (setting `sparse_worktrees = true`): a card with paths gets the top-level
files and the directories its paths lie in, and nothing of its branch is lost by it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from kanban import worktrees
from kanban.testing import board_in, drain, git, write_profile

LOOKER = """\
import os, pathlib
seen = sorted(str(p) for p in pathlib.Path('.').rglob('*') if p.is_file() and '.git' not in p.parts)
pathlib.Path('src/csv/seen.json').write_text(__import__('json').dumps(seen))
pathlib.Path('src/csv/parser.py').write_text('def parse(): return []\\n')
"""


@pytest.mark.parametrize(
    ("globs", "dirs"),
    [
        (["src/csv/**"], ["src/csv"]),
        (["tests/test_csv.py"], ["tests"]),
        (["src/**", "docs/*.md"], ["docs", "src"]),
        (["src/*/x.py"], ["src"]),
        (["*.py"], None),  # a top-level glob: the whole tree
        (["README.md"], None),
        ([], None),
    ],
)
def test_the_directories_a_cards_paths_need(globs: list[str], dirs: list[str] | None) -> None:
    assert worktrees.sparse_dirs(globs) == dirs


def test_a_card_with_paths_gets_a_sparse_worktree_and_its_branch_keeps_everything(
    repo: Path,
) -> None:
    for name in ("src/csv/parser.py", "src/other/big.py", "docs/guide.md", "pyproject.toml"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(f"# {name}\n")
    (repo / "look.py").write_text(LOOKER)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a tree with several parts")
    write_profile(
        repo,
        "look",
        f'command = ["{sys.executable}", "{repo / "look.py"}"]\nprompt = "stdin"\n',
    )
    board_in(repo).close()
    with (repo / ".kanban" / "config.toml").open("a") as config:
        config.write("sparse_worktrees = true\n")
    with board_in(repo) as b:
        assert b.settings.sparse_worktrees
        card = b.add("Parse CSV", profile="look", paths=["src/csv/**"])
        plain = b.add("Look at everything", profile="look")
        drain(repo)
        branch = b.get(card.id).branch
        other = b.get(plain.id).branch
    assert branch is not None and other is not None
    seen = json.loads(git(repo, "show", f"{branch}:src/csv/seen.json"))
    assert "src/csv/parser.py" in seen and "README.md" in seen and "pyproject.toml" in seen
    assert "src/other/big.py" not in seen and "docs/guide.md" not in seen
    # What was not checked out is still on the branch: nothing was deleted by the commit.
    files = git(repo, "ls-tree", "-r", "--name-only", branch).splitlines()
    assert {"src/other/big.py", "docs/guide.md", "src/csv/seen.json"} <= set(files)
    assert git(repo, "show", f"{branch}:src/csv/parser.py") == "def parse(): return []"
    # A card without paths sees the whole tree.
    everything = json.loads(git(repo, "show", f"{other}:src/csv/seen.json"))
    assert "src/other/big.py" in everything
