"""A run's workspace: where its agent works, and what becomes of the work afterwards.

`worktree` profiles get the card's own git worktree (from its parents' branches, fetched
from the remote when they ran on another host); `shared` works in the repository itself;
`none` gets a scratch directory. After the agent: leftover changes are committed to the
card's branch, a done branch is pushed to the remote (several hosts), and a clean worktree
of a done card is removed (its branch stays).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

from kanban import errors, fsutil, profiles, settings, views, worktree_pool
from kanban.worktrees import Workspace, Worktrees


@dataclasses.dataclass
class RunWorkspace:
    config: settings.Settings
    card_id: int
    run_id: int
    note: Callable[[str], None]  # the supervisor's log notes
    worktrees: Worktrees | None = None
    board_id: str | None = None  # the board's identity, carried by branch names
    scratch: tuple[str, ...] = ()  # the profile's globs of files that are not work
    pool: worktree_pool.Pool | None = None  # finished trees to reuse (reuse_worktrees)

    def prepare(
        self, detail: views.CardDetail, profile: profiles.Profile, *, stop: Callable[[], bool]
    ) -> Workspace:
        self.scratch = profile.scratch
        if profile.workspace == "none":
            scratch = self.config.state_dir / "scratch" / f"run-{self.run_id}"
            fsutil.private_dir(scratch)
            return Workspace(path=scratch, branch=None)
        if self.config.repo is None:
            raise errors.WorktreeError(
                f"profile {profile.name} needs a git repository (workspace = "
                f"{profile.workspace!r}) and this board has none; set `repo` in .kanban/config.toml"
            )
        if profile.workspace == "shared":
            return Workspace(path=self.config.repo, branch=None)
        self.worktrees = Worktrees(
            self.config.repo,
            root=self.config.worktrees,
            base_branch=self.config.base_branch,
            remote=self.config.remote,
            board_id=self.board_id,
            time_limit=self.config.prep_timeout,
        )
        self.worktrees.stop = stop
        if self.config.reuse_worktrees:
            self.pool = worktree_pool.Pool(self.worktrees, limit=self.config.max_workers)
            self.worktrees.pool = self.pool
        parents = [p.branch for p in detail.parents if p.branch]
        own = detail.card.branch or self.worktrees.names(detail.card.id, detail.card.title)[1]
        if missing := self.worktrees.fetch_parents(parents, own=own, stop=stop):
            self.note(
                f"parent branch {', '.join(missing)} is not here: set `remote` (several hosts)"
            )
        workspace = self.worktrees.prepare(
            detail.card.id,
            detail.card.title,
            parents,
            branch=detail.card.branch,
            sparse=detail.card.paths if self.config.sparse_worktrees else (),
        )
        self.note(
            f"worktree {workspace.path} on {workspace.branch}"
            + (" (reused)" if workspace.reused else f" from {workspace.base}")
            + (" (a pooled tree, reset)" if workspace.pooled else "")
        )
        return workspace

    def keep_work(self, workspace: Workspace, *, reason: str) -> None:
        """Commit whatever the agent left uncommitted to the card's branch."""
        if self.worktrees is None or workspace.branch is None:
            return
        self._clear_scratch(workspace.path)
        try:
            commit = self.worktrees.commit_all(
                workspace.path,
                f"kanban: changes left by card {self.card_id} run {self.run_id} ({reason})",
            )
        except errors.WorktreeError as exc:
            self.note(f"could not commit leftover changes: {exc.message}")
            return
        if commit:
            self.note(f"committed leftover changes as {commit[:12]}")

    def _clear_scratch(self, path: Path) -> None:
        """Remove the profile's scratch files (an agent's caches) so they never become work."""
        for pattern in self.scratch:
            for found in path.glob(pattern):
                if found.is_dir() and not found.is_symlink():
                    shutil.rmtree(found, ignore_errors=True)
                else:
                    found.unlink(missing_ok=True)
                self.note(f"removed the agent's scratch file {found.name}")

    def publish(self, workspace: Workspace) -> str | None:
        """Several hosts: push a done card's branch to the remote, so that children on other
        hosts start from it. Returns what went wrong, or None."""
        if self.worktrees is None or workspace.branch is None or not self.config.remote:
            return None
        try:
            self.worktrees.push(workspace.branch)
        except errors.WorktreeError as exc:
            return (
                f"the agent finished but pushing {workspace.branch} to {self.config.remote} "
                f"failed (its work stays on the branch here): {exc.message}"
            )
        self.note(f"pushed {workspace.branch} to {self.config.remote}")
        return None

    def remove(self, workspace: Workspace) -> None:
        """Remove the worktree of a done card if it is clean (the branch stays); with
        `reuse_worktrees`, a clean one goes to the pool for the next card instead."""
        if self.worktrees is None or workspace.branch is None:
            return
        try:
            if self.pool is not None and self.pool.put(workspace.path):
                self.note("worktree pooled for the next card (branch kept)")
                return
            removed = self.worktrees.remove(workspace.path)
        except errors.WorktreeError as exc:
            self.note(f"could not remove worktree: {exc.message}")
            return
        self.note("worktree removed (branch kept)" if removed else "worktree kept: not clean")
