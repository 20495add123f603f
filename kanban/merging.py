"""The board's base branch and bringing finished branches home.

The base branch is recorded at `kanban init` (`--base`, default the branch checked out then)
in `.kanban/config.toml` as `base_branch`: new cards start from it and `kanban merge` merges
into it, whatever is checked out later. Merging fast-forwards when the history allows (a
linear chain of cards makes no merge commit per card); `--dry-run` computes the same merges
with `git merge-tree` and throwaway commit objects, touching no ref, index or worktree. A
conflict names both branches and the files and says exactly which commands resolve it.
`gc --branches` deletes the branches of finished cards that are already in the base.
"""

from __future__ import annotations

import json
import os
import shlex
import tomllib
from collections.abc import Sequence
from pathlib import Path

import git

from kanban import errors, gitrun
from kanban.worktrees import MergeReport, Worktrees


def current_branch(repo: Path) -> str | None:
    """The branch checked out in `repo`, or None when HEAD is detached."""
    status, out, _ = git.Git(str(repo)).execute(
        ["git", "symbolic-ref", "--quiet", "--short", "HEAD"],
        with_extended_output=True,
        with_exceptions=False,
    )
    return str(out).strip() or None if status == 0 else None


def choose_base(repo: Path, config: Path, given: str | None) -> str | None:
    """The base branch `init` records: `given`, else the current branch. Refuses a branch that
    does not exist, or one that contradicts the base this clone already records."""
    recorded = _recorded(config)
    if given is not None:
        status, _, _ = git.Git(str(repo)).execute(
            ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{given}"],
            with_extended_output=True,
            with_exceptions=False,
        )
        if status != 0:
            raise errors.UsageError(
                f"--base {given!r}: no such branch in {repo} (see `git branch`)"
            )
        if recorded is not None and recorded != given:
            raise errors.UsageError(
                f"this board's base branch is {recorded!r} ({config}); edit base_branch "
                "there to change it"
            )
        return given
    return recorded or current_branch(repo)


def remember_base(config: Path, branch: str) -> None:
    """Add `base_branch = BRANCH` to the clone's config unless it records one already."""
    if _recorded(config) is not None:
        return
    text = config.read_text() if config.exists() else ""
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(
            ("\n" if text and not text.endswith("\n") else "")
            + f"base_branch = {json.dumps(branch)}  # new cards start here; kanban merge's target\n"
        )


def _recorded(config: Path) -> str | None:
    if not config.is_file():
        return None
    value = tomllib.loads(config.read_text()).get("base_branch")
    return str(value) if value else None


# ---------------------------------------------------------------------------- dry run


def simulate(trees: Worktrees, target: str, branches: Sequence[str]) -> MergeReport:
    """What `merge_into(target, branches)` would do, computed without changing anything."""
    tip = trees.head(target)
    merged: list[str] = []
    fast: list[str] = []
    already: list[str] = []
    for branch in branches:
        head = trees.head(branch)
        if _ancestor(trees, head, tip):
            already.append(branch)
            continue
        if _ancestor(trees, tip, head):
            merged.append(branch)
            fast.append(branch)
            tip = head
            continue
        # merge-tree runs merge drivers: kanban's own git, so none the repository names.
        status, out, _ = trees.repo.git.execute(
            ["git", *gitrun.NO_HOOKS, "merge-tree", *MERGE_TREE, tip, head],
            with_extended_output=True,
            with_exceptions=False,
            env=trees.safe_env(),
        )
        lines = [line for line in str(out).splitlines() if line]
        if status != 0:
            return MergeReport(
                target, tuple(merged), tuple(already), branch, tuple(lines[1:]), tuple(fast)
            )
        # A commit object nothing points at (git gc drops it), so the next branch merges on
        # top of this one exactly as the real merge would.
        tip = str(
            trees.repo.git.execute(
                [
                    "git",
                    *gitrun.NO_HOOKS,
                    "commit-tree",
                    lines[0],
                    "-p",
                    tip,
                    "-p",
                    head,
                    "-m",
                    "dry run",
                ],
                env=trees.safe_env(trees.identity_env()),
            )
        ).strip()
        merged.append(branch)
    return MergeReport(target, tuple(merged), tuple(already), fast_forwarded=tuple(fast))


MERGE_TREE = ("--write-tree", "--name-only", "--no-messages")


def _ancestor(trees: Worktrees, older: str, newer: str) -> bool:
    status, _, _ = trees.repo.git.execute(
        ["git", "merge-base", "--is-ancestor", older, newer],
        with_extended_output=True,
        with_exceptions=False,
    )
    return bool(status == 0)


# ---------------------------------------------------------------------------- conflicts


def conflict_commands(trees: Worktrees, report: MergeReport) -> list[str]:
    """The commands that resolve `report`'s conflict by hand, then carry on with the rest."""
    assert report.conflict is not None
    repo = Path(trees.repo.working_dir)
    holder = next((p for p, b in trees.worktrees_all().items() if b == report.target), None)
    q = shlex.quote
    steps: list[str] = []
    added = holder is None
    if holder is None:
        holder = trees.root / f"merge-{report.target.replace('/', '-')}"
        steps.append(f"git -C {q(str(repo))} worktree add {q(str(holder))} {q(report.target)}")
    files = " ".join(q(f) for f in report.conflict_files) or "FILES"
    steps += [
        f"git -C {q(str(holder))} merge {q(report.conflict)}",
        f"# edit {files} in {holder} to resolve the conflict, then:",
        f"git -C {q(str(holder))} add {files} && git -C {q(str(holder))} commit --no-edit",
    ]
    if added:
        steps.append(f"git -C {q(str(repo))} worktree remove {q(str(holder))}")
    steps.append("kanban merge   # carries on with the branches after it")
    return steps


# ---------------------------------------------------------------------------- gc --branches


def removable_branches(
    trees: Worktrees, base: str, branches: Sequence[str]
) -> tuple[list[str], dict[str, str]]:
    """Of finished cards' `branches`: those safe to delete (in `base`, in no worktree), and
    why each other one stays."""
    checked_out = set(trees.worktrees_all().values())
    base_head = trees.head(base)
    gone: list[str] = []
    kept: dict[str, str] = {}
    for branch in dict.fromkeys(branches):
        if not trees.branch_exists(branch):
            continue
        if branch in checked_out:
            kept[branch] = "checked out in a worktree (kanban gc removes a clean one first)"
        elif not _ancestor(trees, trees.head(branch), base_head):
            kept[branch] = f"has commits {base} lacks (`kanban merge` first)"
        else:
            gone.append(branch)
    return gone, kept
