"""A pool of finished worktrees, reset for the next card instead of checking out anew.

Setting `reuse_worktrees = true`. On a big repository `git worktree add` writes every file
again (0.5 s and 38 MB on 5,000 files); a finished card's clean worktree already holds nearly
all of them. When a done card's worktree is clean, it is detached from the card's branch (the
branch stays, with all its commits) and moved to `<root>/.pool/`. A new card takes one: it is
moved to the card's path under a lock (so two starting cards never get one tree), checked out
with `git checkout -f -B <branch> <base>`, emptied of every untracked and ignored file
(`git clean -ffdx`), and given the card's sparse pattern (or none). A tree that is dirty when
it would enter or leave the pool is never used; `kanban gc` removes the pooled trees.

Nothing here touches the board.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from kanban import errors
from kanban.worktrees import Worktrees

logger = logging.getLogger(__name__)

POOL_DIR = ".pool"


class Pool:
    """The pooled worktrees of one repository under one worktree root. Holds at most `limit`
    trees (a pool never needs more than the cards that can start at once)."""

    def __init__(self, trees: Worktrees, *, limit: int = 4) -> None:
        self.trees = trees
        self.limit = limit
        self.dir = trees.root / POOL_DIR

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One taker or giver at a time per repository, across every process of this host.
        Taken before (never inside) the `git worktree` lock of `Worktrees._git`."""
        path = Path(self.trees.repo.common_dir) / "kanban-pool.lock"
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def pooled(self, registered: dict[Path, str | None] | None = None) -> list[Path]:
        """The pooled trees git knows about (in `registered`, from `worktrees_all()`, when
        given), newest first."""
        registered = self.trees.worktrees_all() if registered is None else registered
        found = [p for p in registered if p.parent == self.dir.absolute()]
        return sorted(found, key=lambda p: p.name, reverse=True)

    def _clean(self, path: Path) -> bool:
        try:
            return self.trees.is_clean(path)
        except errors.WorktreeError:
            return False

    # ------------------------------------------------------------------ giving back

    def put(self, path: Path) -> bool:
        """Give a finished card's worktree to the pool. Only a clean one (nothing modified,
        nothing untracked that git does not ignore) on a branch, while the pool has room;
        False: it was not taken (the caller removes or keeps it as before)."""
        if not path.is_dir() or not self._clean(path):
            return False
        with self._lock():
            if len(self.pooled()) >= self.limit:
                return False
            branch = self.trees.worktrees_all().get(path.absolute())
            if branch is None:
                return False  # detached or unknown: its commits may be on no branch
            self.dir.mkdir(parents=True, exist_ok=True)
            slot = self.dir / f"tree-{time.time_ns()}"
            while slot.exists():  # `worktree move` into a directory would nest the tree in it
                slot = slot.with_name(f"{slot.name}-")
            self.trees.command("checkout", "-q", "--detach", cwd=path)  # the branch is free again
            try:
                self.trees.command("worktree", "move", str(path), str(slot))
            except errors.WorktreeError:
                # Not movable (git refuses some trees): leave it as it was, on its branch.
                self.trees.command("checkout", "-q", branch, cwd=path)
                return False
        logger.info("pooled %s as %s", path, slot)
        return True

    # ------------------------------------------------------------------ taking

    def take(
        self, path: Path, *, branch: str, start: str | None, cone: Sequence[str] | None
    ) -> bool:
        """Make `path` a worktree on `branch` from a pooled tree: a new branch at `start`
        (`checkout -B`), or the existing `branch` when `start` is None; with `cone`, a sparse
        checkout of those directories, else the whole tree. False: the pool had no clean
        tree (the caller runs `git worktree add`)."""
        taken = self._claim(path)
        if not taken:
            return False
        try:
            self._reset(path, branch=branch, start=start, cone=cone)
        except errors.WorktreeError:
            # It held nobody's work: drop it rather than leave a half-reset tree at `path`.
            with contextlib.suppress(errors.WorktreeError):
                self.trees.command("worktree", "remove", "--force", "--force", str(path))
            raise
        return True

    def _claim(self, path: Path) -> bool:
        with self._lock():
            for slot in self.pooled():
                if not self._clean(slot):
                    logger.warning("pooled worktree %s was changed; not reused", slot)
                    continue
                self.trees.command("worktree", "move", str(slot), str(path))
                return True
        return False

    def _reset(
        self, path: Path, *, branch: str, start: str | None, cone: Sequence[str] | None
    ) -> None:
        git = self.trees.command
        if start is None:
            git("checkout", "-q", "-f", branch, cwd=path)
        else:
            git("checkout", "-q", "-f", "-B", branch, start, cwd=path)
        # Every untracked and ignored file of the tree's earlier card (nested repositories too).
        git("clean", "-q", "-ffdx", cwd=path)
        if cone:
            git("sparse-checkout", "set", "--cone", "--", *cone, cwd=path)
        elif _is_sparse(self.trees, path):
            git("sparse-checkout", "disable", cwd=path)

    # ------------------------------------------------------------------ gc

    def drain(
        self, *, dry_run: bool = False, registered: dict[Path, str | None] | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """`kanban gc`: remove every pooled tree. A changed one is kept and named."""
        removed: list[str] = []
        kept: dict[str, str] = {}
        with self._lock():
            for slot in self.pooled(registered):
                if not self._clean(slot):
                    kept[str(slot)] = "a pooled worktree with changes (not reused)"
                    continue
                if not dry_run:
                    self.trees.command("worktree", "remove", "--force", str(slot))
                removed.append(str(slot))
        return removed, kept


def _is_sparse(trees: Worktrees, path: Path) -> bool:
    try:
        value = trees.command("config", "--type=bool", "--get", "core.sparseCheckout", cwd=path)
    except errors.WorktreeError:  # not set
        return False
    return value == "true"
