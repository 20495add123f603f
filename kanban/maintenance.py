"""Housekeeping on the repository: `kanban gc` and `kanban merge`."""

from __future__ import annotations

from typing import Any

from kanban import api, errors, merging, worktree_pool
from kanban.states import FINISHED
from kanban.worktrees import Worktrees


def _worktrees(board: api.Board) -> Worktrees:
    if board.settings.repo is None:
        raise errors.WorktreeError(
            "this board has no git repository; set `repo` in .kanban/config.toml"
        )
    return Worktrees(
        board.settings.repo, root=board.settings.worktrees, base_branch=board.settings.base_branch
    )


def gc(board: api.Board, *, dry_run: bool = False, branches: bool = False) -> dict[str, Any]:
    trees = _worktrees(board)
    report = _gc_worktrees(board, trees, dry_run=dry_run)
    if branches:
        finished = [
            c.branch
            for c in board.cards(include_archived=True)
            if c.branch and c.status in FINISHED
        ]
        base = trees.base()
        gone, kept = merging.removable_branches(trees, base, finished)
        if not dry_run:
            for branch in gone:
                trees.delete_branch(branch)
        report["branches_removed"] = gone
        report["branches_kept"] = kept
        report["base"] = base
    return report


def _gc_worktrees(board: api.Board, trees: Worktrees, *, dry_run: bool) -> dict[str, Any]:
    removed: list[str] = []
    kept: dict[str, str] = {}
    known = trees.worktrees_all()  # one `git worktree list` for all of them
    registered = {p: b for p, b in known.items() if p.parent == trees.root}
    for path, branch in sorted(registered.items()):
        head = path.name.split("-", 1)[0]
        if not head.isdigit():
            continue
        try:
            card = board.get(int(head))
        except errors.CardNotFound:
            kept[str(path)] = "no such card on this board"
            continue
        if card.branch is not None and branch is not None and card.branch != branch:
            kept[str(path)] = f"not this board's: card {card.id} here works on {card.branch}"
            continue
        if card.status not in FINISHED:
            continue
        if not trees.is_clean(path):
            kept[str(path)] = (
                f"card {card.id} is {card.status} but the worktree has uncommitted changes"
            )
            continue
        if not dry_run and not trees.remove(path, registered=registered):
            kept[str(path)] = "git would not remove it"
            continue
        removed.append(str(path))
    # Pooled trees (reuse_worktrees) are finished cards' trees waiting for the next card.
    pooled, kept_pooled = worktree_pool.Pool(trees).drain(dry_run=dry_run, registered=known)
    kept.update(kept_pooled)
    return {"removed": removed, "kept": kept, "dry_run": dry_run, "pool_removed": pooled}


def merge(
    board: api.Board, *, cards: list[int] | None, target: str | None, dry_run: bool = False
) -> dict[str, Any]:
    trees = _worktrees(board)
    target = target or trees.base()
    chosen = [board.get(c) for c in cards] if cards else board.cards("done")
    for card in chosen:
        if card.status not in ("done", "archived"):
            raise errors.InvalidTransition(
                f"card {card.id} is {card.status}; only done cards merge"
            )
    branches = [c.branch for c in sorted(chosen, key=lambda c: c.id) if c.branch]
    branches = [b for b in branches if trees.branch_exists(b)]
    if not trees.branch_exists(target):
        raise errors.WorktreeError(f"target branch {target!r} does not exist")
    if dry_run:
        report = merging.simulate(trees, target, branches)
    else:
        report = trees.merge_into(target, branches)
    return {
        "target": report.target,
        "dry_run": dry_run,
        "merged": list(report.merged),
        "fast_forwarded": list(report.fast_forwarded),
        "already": list(report.already),
        "conflict": report.conflict,
        "conflict_files": list(report.conflict_files),
        "resolve": merging.conflict_commands(trees, report) if report.conflict else [],
    }
