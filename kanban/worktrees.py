"""Git worktrees and branches for cards, and merging finished branches.

Each card works in `<root>/<id>-<slug>-<board>` on branch `kanban/<id>-<slug>-<board>` (the
board's own id: a re-created board or a second board on one repository never reuses another's
branch; cards of boards from before board ids keep the names they have). A card with one parent
starts from the parent's branch; with several, from a merge of them (a conflict names the
files); with none, from the base branch. A worktree is removed only when it is clean; the
branch always stays. Nothing here touches the board; how each git command is run (no hooks,
its own process group, the worktree lock) lives in kanban.gitrun.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import git

from kanban import errors, gitrun, gitsafe, retrying

logger = logging.getLogger(__name__)

PARENT_BRANCH_WAIT = 60.0  # how long a child waits for a parent's branch to reach the remote


@dataclasses.dataclass(frozen=True, slots=True)
class Workspace:
    path: Path
    branch: str | None
    base: str | None = None
    reused: bool = False  # the card's own worktree or branch from an earlier attempt
    pooled: bool = False  # a finished card's tree, reset for this card (kanban.worktree_pool)


@dataclasses.dataclass(frozen=True, slots=True)
class MergeReport:
    target: str
    merged: tuple[str, ...]
    already: tuple[str, ...]
    conflict: str | None = None
    conflict_files: tuple[str, ...] = ()
    fast_forwarded: tuple[str, ...] = ()  # of `merged`: those that made no merge commit


def slug(title: str, *, limit: int = 40) -> str:
    """Lowercase ASCII words joined by '-': safe as a path part and a branch name."""
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", text.lower())
    result = "-".join(words)[:limit].strip("-")
    return result or "card"


class WorktreePort(Protocol):
    """What the supervisor and `kanban gc`/`merge` need; a fake lives in kanban.testing."""

    def names(self, card_id: int, title: str) -> tuple[Path, str]: ...
    def prepare(
        self, card_id: int, title: str, parents: Sequence[str], *, branch: str | None = None
    ) -> Workspace: ...
    def commit_all(self, path: Path, message: str) -> str | None: ...
    def is_clean(self, path: Path) -> bool: ...
    def remove(self, path: Path) -> bool: ...


class TreeSource(Protocol):
    """Where a new card's worktree can come from instead of `git worktree add`: the pool of
    finished trees (kanban.worktree_pool). False: it had none to give."""

    def take(
        self, path: Path, *, branch: str, start: str | None, cone: Sequence[str] | None
    ) -> bool: ...


def sparse_dirs(globs: Sequence[str]) -> list[str] | None:
    """The directories a sparse worktree needs for these path globs: each glob's leading
    directories without wildcards (`src/csv/**` -> `src/csv`, `tests/test_x.py` -> `tests`).
    None when a glob reaches the top level (`*.py`, `README.md`): then nothing is left out.
    Top-level files are always there in cone mode."""
    dirs: list[str] = []
    for glob in globs:
        above = glob.strip("/").split("/")[:-1]  # the directories the last part lies in
        fixed = list(itertools.takewhile(lambda part: not any(c in part for c in "*?["), above))
        if not fixed:
            return None
        dirs.append("/".join(fixed))
    return sorted(set(dirs)) or None


def card_names(root: Path, *, card_id: int, title: str, board_id: str | None) -> tuple[Path, str]:
    """A card's worktree path and branch: `<root>/<id>-<slug>-<board>`, `kanban/<id>-<slug>-<board>`
    (without a board id, as boards before 0005 named them)."""
    name = f"{card_id}-{slug(title)}" + (f"-{board_id}" if board_id else "")
    return _inside(root, name), f"kanban/{name}"


def _inside(root: Path, name: str) -> Path:
    path = (root / name).absolute()
    if path.parent != root.absolute():
        raise errors.WorktreeError(f"worktree path {path} escapes {root}")
    return path


class Worktrees:
    def __init__(
        self,
        repo: Path,
        *,
        root: Path,
        base_branch: str | None = None,
        remote: str | None = None,
        board_id: str | None = None,
        time_limit: float = 600.0,
    ) -> None:
        try:
            self.repo = git.Repo(repo)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise errors.RepositoryUnusable(
                f"{repo} is not a git repository; run `git init` there, or set `repo` in "
                ".kanban/config.toml"
            ) from exc
        self.root = root.absolute()
        self.base_branch = base_branch
        self.remote = remote  # a git remote's name ("origin"): branches shared between hosts
        self.board_id = board_id  # carried by every card's branch and worktree name
        self.time_limit = time_limit  # one git command (and its hooks), at most
        self.stop: Callable[[], bool] = lambda: False  # True: the caller gave up (cancelled)
        self.pool: TreeSource | None = None  # reuse finished trees (setting reuse_worktrees)

    # ------------------------------------------------------------------ plumbing

    def command(self, *args: str, cwd: Path | None = None) -> str:
        """One git command as kanban runs them all (no hooks, retried, `worktree` ones locked)."""
        return self._git(*args, cwd=cwd)

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        """Run git (through GitPython), retrying while another git process holds a lock.

        Never with the repository's hooks, fsmonitor, filters, drivers or any other program its
        configuration names (kanban.gitsafe): an agent can write those into the shared git
        directory, and kanban's git runs outside any sandbox (docs/security.md)."""
        runner = git.Git(str(cwd)) if cwd is not None else self.repo.git
        env = gitrun.identity_env(self.repo)
        workdir = Path(str(runner.working_dir or self.repo.working_dir))
        common = Path(self.repo.common_dir)

        def call() -> str:
            try:
                return gitrun.execute(
                    list(args),
                    cwd=workdir,
                    env=env,
                    common_dir=common,
                    time_limit=self.time_limit,
                    stop=self.stop,
                )
            except git.GitCommandError as exc:
                raise errors.WorktreeError(gitrun.describe(exc)) from exc

        if args and args[0] == "worktree":
            with gitrun.worktree_lock(common):
                return retrying.git(call)
        return retrying.git(call)

    def identity_env(self) -> dict[str, str]:
        return gitrun.identity_env(self.repo)

    def safe_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The whole environment for a git command of kanban's own outside `_git` (with
        gitrun.NO_HOOKS): what the repository's configuration could make git run is overridden."""
        return gitsafe.environment(Path(self.repo.common_dir), env={**os.environ, **(extra or {})})

    def worktrees_all(self) -> dict[Path, str | None]:
        """Every worktree git knows about (the main checkout too): path -> branch."""
        return self._registered()

    def delete_branch(self, branch: str) -> None:
        """Delete `branch` (the caller checked that its commits are in the base)."""
        self._git("branch", "--quiet", "-D", branch)

    def branch_exists(self, branch: str) -> bool:
        try:
            self._git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
        except errors.WorktreeError:
            return False
        return True

    def base(self) -> str:
        if self.base_branch:
            if not self.branch_exists(self.base_branch):
                raise errors.RepositoryUnusable(
                    f"base branch {self.base_branch!r} does not exist; set base_branch in "
                    ".kanban/config.toml or create it"
                )
            return self.base_branch
        if not gitrun.has_commit(Path(self.repo.working_dir)):
            raise errors.RepositoryUnusable(gitrun.no_commit_message(Path(self.repo.working_dir)))
        try:
            return self._git("symbolic-ref", "--short", "HEAD")
        except errors.WorktreeError:
            return self._git("rev-parse", "HEAD")  # a detached repository: start from its commit

    def names(self, card_id: int, title: str) -> tuple[Path, str]:
        return card_names(self.root, card_id=card_id, title=title, board_id=self.board_id)

    def _registered(self) -> dict[Path, str | None]:
        """Worktrees git knows about: path -> branch (None when detached)."""
        found: dict[Path, str | None] = {}
        current: Path | None = None
        for line in self._git("worktree", "list", "--porcelain").splitlines():
            if line.startswith("worktree "):
                current = Path(line.split(" ", 1)[1])
                found[current] = None
            elif line.startswith("branch ") and current is not None:
                found[current] = line.split(" ", 1)[1].removeprefix("refs/heads/")
        return found

    # ------------------------------------------------------------------ cards

    def prepare(
        self,
        card_id: int,
        title: str,
        parents: Sequence[str],
        *,
        branch: str | None = None,
        sparse: Sequence[str] = (),
    ) -> Workspace:
        """The card's worktree; `branch` is the one the board recorded for the card (a card
        of a board from before board ids keeps its branch), else its name carries the board's
        id, so another board's card of the same number never shares it. With `sparse` (the
        card's path globs), a new worktree holds only the top-level files and the directories
        those paths lie in (git's cone mode)."""
        path, own = self.names(card_id, title)
        if branch is not None and branch.startswith("kanban/"):
            path = _inside(self.root, branch.removeprefix("kanban/"))
        else:
            branch = own
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.RepositoryUnusable(
                f"the worktree root {self.root} cannot be made: {exc.strerror}; fix its "
                "permissions or set `worktree_root` in .kanban/config.toml"
            ) from exc
        if self.branch_exists(branch) and self.is_stale(path, branch, parents):
            self.reset(card_id, title)  # nothing of its own: start again from today's base
        if self.branch_exists(branch):
            if path in self._registered() and path.is_dir():
                self.clear_stale_lock(path)
                return Workspace(path=path, branch=branch, reused=True)
            self._git("worktree", "prune")
            if not self._from_pool(path, branch=branch, start=None, cone=None):
                self._git("worktree", "add", str(path), branch)
            return Workspace(path=path, branch=branch, reused=True)
        existing = [b for b in dict.fromkeys(parents) if self.branch_exists(b)]
        base = existing[0] if existing else self.base()
        cone = sparse_dirs(sparse)
        pooled = self._from_pool(path, branch=branch, start=base, cone=cone)
        if pooled:
            logger.info("worktree %s reset from the pool", path)
        elif cone is None:
            self._git("worktree", "add", "-b", branch, str(path), base)
        else:
            self._git("worktree", "add", "--no-checkout", "-b", branch, str(path), base)
            self._git("sparse-checkout", "set", "--cone", "--", *cone, cwd=path)
            self._git("checkout", "-q", branch, cwd=path)
        for other in existing[1:]:
            try:
                self._git(
                    "merge",
                    "--no-edit",
                    "--no-ff",
                    "-m",
                    f"kanban: merge parent {other} into {branch}",
                    other,
                    cwd=path,
                )
            except errors.WorktreeError as exc:
                files = self._conflicted(path)
                self._discard(path, branch)
                if files:
                    listed = ", ".join(files)
                    repo = self.repo.working_dir
                    raise errors.MergeConflict(
                        f"merging the parents' branches conflicts ({other} into "
                        f"{existing[0]}) in: {listed}; resolve it on the card's branch: "
                        f"git -C {repo} worktree add -b {branch} {path} {existing[0]} && "
                        f"git -C {path} merge {other}; fix {listed}; git -C {path} add "
                        f"{' '.join(files)} && git -C {path} commit --no-edit; then "
                        f"`kanban unblock {card_id}`",
                        list(files),
                    ) from exc
                raise
        return Workspace(path=path, branch=branch, base=",".join(existing) or base, pooled=pooled)

    def _from_pool(
        self, path: Path, *, branch: str, start: str | None, cone: Sequence[str] | None
    ) -> bool:
        if self.pool is None or path.exists():
            return False
        return self.pool.take(path, branch=branch, start=start, cone=cone)

    def own_commits(self, branch: str, parents: Sequence[str]) -> int:
        """Commits on `branch` that its starting point (its parents' branches, else the base
        branch) does not have."""
        starts = [b for b in dict.fromkeys(parents) if self.branch_exists(b)] or [self.base()]
        return int(self._git("rev-list", "--count", branch, "--not", *starts) or 0)

    def is_stale(self, path: Path, branch: str, parents: Sequence[str]) -> bool:
        """A branch with no commits of its own that its starting point has moved past, and no
        uncommitted work: rebuilding it loses nothing and brings the new commits in."""
        try:
            if self.own_commits(branch, parents):
                return False
            starts = [b for b in dict.fromkeys(parents) if self.branch_exists(b)]
            starts = starts or [self.base()]
            if len(starts) == 1 and self.head(starts[0]) == self.head(branch):
                return False  # already at its starting point
            return not path.is_dir() or self.is_clean(path)
        except errors.WorktreeError:  # cannot tell: keep the branch as it is
            return False

    def reset(self, card_id: int, title: str, *, keep: bool = False) -> str | None:
        """Remove a card's worktree (clean only) and branch, so that its next attempt starts
        from the current base. With `keep`, the branch is renamed to `kanban/stale/...` and
        its new name returned; without, a branch with commits of its own is refused."""
        path, branch = self.names(card_id, title)
        if not self.branch_exists(branch):
            return None
        if path.is_dir() and not self.is_clean(path):
            raise errors.WorktreeError(
                f"worktree {path} has uncommitted changes; commit or discard them first "
                f"(git -C {path} status)"
            )
        if path.absolute() in self._registered():
            self._git("worktree", "remove", "--force", str(path))
        self._git("worktree", "prune")
        if not keep:
            self._git("branch", "-D", branch)
            return None
        kept = f"kanban/stale/{branch.removeprefix('kanban/')}-{time.strftime('%Y%m%d%H%M%S')}"
        self._git("branch", "-m", branch, kept)
        return kept

    def _conflicted(self, path: Path) -> tuple[str, ...]:
        try:
            out = self._git("diff", "--name-only", "--diff-filter=U", cwd=path)
        except errors.WorktreeError:
            return ()
        return tuple(line for line in out.splitlines() if line)

    def _discard(self, path: Path, branch: str) -> None:
        """Undo a worktree we just created and that never held any work."""
        for args in (("merge", "--abort"),):
            with contextlib.suppress(errors.WorktreeError):
                self._git(*args, cwd=path)
        self._git("worktree", "remove", "--force", str(path))
        self._git("branch", "-D", branch)

    def clear_stale_lock(self, path: Path, *, older_than: float = 60.0) -> bool:
        """Remove the `index.lock` a crashed git left in a worktree, if it is old and no
        process holds it open. Git never does this itself, and every later git command in
        that worktree would fail on it. Returns True when a lock was removed."""
        try:
            gitdir = Path(self._git("rev-parse", "--absolute-git-dir", cwd=path))
        except errors.WorktreeError:
            return False
        lock = gitdir / "index.lock"
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return False
        if age < older_than or gitrun.held_open(lock):
            return False
        lock.unlink(missing_ok=True)
        logger.warning("removed a stale %s (%.0fs old, no process holds it)", lock, age)
        return True

    def commit_all(self, path: Path, message: str) -> str | None:
        """Commit everything left in the worktree; returns the commit, or None if it was clean."""
        if not path.is_dir() or self.is_clean(path):
            return None
        self._git("add", "-A", cwd=path)
        self._git("commit", "-q", "--no-verify", "-m", message, cwd=path)
        return self._git("rev-parse", "HEAD", cwd=path)

    def is_clean(self, path: Path, *, untracked: bool = True) -> bool:
        mode = "--untracked-files=all" if untracked else "--untracked-files=no"
        return self._git("status", "--porcelain", mode, cwd=path) == ""

    def remove(self, path: Path, *, registered: dict[Path, str | None] | None = None) -> bool:
        """Remove a clean worktree (its branch stays). A dirty one is kept: returns False.
        `git worktree remove` itself refuses modified or untracked files, so no `git status`
        is run here; `registered` (from `worktrees()`) saves a `worktree list` per tree."""
        if not path.exists():
            self._git("worktree", "prune")
            return True
        known = registered if registered is not None else self._registered()
        if path.absolute() in known and known[path.absolute()] is None:
            return False  # detached: its commits are on no branch; keep them
        try:
            self._git("worktree", "remove", str(path))
        except errors.WorktreeError as exc:
            if "contains modified or untracked files" in exc.message:
                return False
            raise
        return True

    def worktrees(self) -> dict[Path, str | None]:
        """The card worktrees under the root, with their branches."""
        return {p: b for p, b in self._registered().items() if p.parent == self.root}

    def head(self, branch: str) -> str:
        return self._git("rev-parse", branch)

    def files_on(self, branch: str) -> list[str]:
        return self._git("ls-tree", "-r", "--name-only", branch).splitlines()

    # ------------------------------------------------------------------ merge

    def merge_into(self, target: str, branches: Sequence[str]) -> MergeReport:
        """Merge `branches` in order into `target`, stopping cleanly at the first conflict.

        Works in the main checkout when it has `target` checked out (and is clean), else in a
        temporary worktree of `target`.
        """
        if not self.branch_exists(target):
            raise errors.WorktreeError(f"target branch {target!r} does not exist")
        where = self._registered()
        holder = next((p for p, b in where.items() if b == target), None)
        temporary = None
        if holder is None:
            temporary = self.root / f".merge-{slug(target)}"
            self.root.mkdir(parents=True, exist_ok=True)
            self._git("worktree", "add", str(temporary), target)
            holder = temporary
        elif not self.is_clean(holder, untracked=False):
            raise errors.WorktreeError(
                f"{target} is checked out in {holder} with uncommitted changes; commit or "
                "stash them first"
            )
        merged: list[str] = []
        already: list[str] = []
        fast: list[str] = []
        try:
            for branch in branches:
                if self._is_ancestor(branch, target):
                    already.append(branch)
                    continue
                if self._is_ancestor(target, branch):
                    fast.append(branch)  # `--ff` below moves target, no merge commit
                try:
                    self._git(
                        "merge",
                        "--no-edit",
                        "--ff",
                        "-m",
                        f"kanban: merge {branch} into {target}",
                        branch,
                        cwd=holder,
                    )
                except errors.WorktreeError:
                    files = self._conflicted(holder)
                    with contextlib.suppress(errors.WorktreeError):
                        self._git("merge", "--abort", cwd=holder)
                    return MergeReport(
                        target, tuple(merged), tuple(already), branch, files, tuple(fast)
                    )
                merged.append(branch)
        finally:
            if temporary is not None:
                self._git("worktree", "remove", "--force", str(temporary))
        return MergeReport(target, tuple(merged), tuple(already), fast_forwarded=tuple(fast))

    # ------------------------------------------------------------------ several hosts

    def push(self, branch: str) -> None:
        """Publish `branch` on the remote (a fast-forward; a rejected push raises)."""
        if self.remote is None:
            return
        self._git(
            "push",
            "--quiet",
            *gitsafe.RECEIVE_PACK,
            self.remote,
            f"refs/heads/{branch}:refs/heads/{branch}",
        )

    def fetch(self, branches: Sequence[str]) -> tuple[str, ...]:
        """Bring `branches` from the remote where this clone lacks them or is behind them.

        A local branch is created, or fast-forwarded when no worktree has it checked out; one
        with commits the remote lacks is left alone. Returns the branches that are neither
        here nor on the remote.
        """
        wanted = list(dict.fromkeys(branches))
        if self.remote is not None and wanted:
            listed = self._git(
                "ls-remote",
                "--heads",
                *gitsafe.UPLOAD_PACK,
                self.remote,
                *(f"refs/heads/{b}" for b in wanted),
            )
            heads = {line.split("\t", 1)[1] for line in listed.splitlines() if "\t" in line}
            found = [b for b in wanted if f"refs/heads/{b}" in heads]
            if found:
                self._git(
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    *gitsafe.UPLOAD_PACK,
                    self.remote,
                    *(f"+refs/heads/{b}:{self._tracking(b)}" for b in found),
                )
            for branch in found:
                self._adopt(branch)
        return tuple(b for b in wanted if not self.branch_exists(b))

    def fetch_parents(
        self,
        parents: Sequence[str],
        *,
        own: str,
        wait: float = PARENT_BRANCH_WAIT,
        stop: Callable[[], bool] = lambda: False,
    ) -> tuple[str, ...]:
        """Before `prepare`: fetch the parents' branches (and the card's own, from an attempt on
        another host). A parent that finished elsewhere a moment ago may still be pushing, so
        wait up to `wait` seconds for it; then raise naming it. Without a remote nothing is
        fetched: returns the parents' branches this clone lacks."""
        deadline = time.monotonic() + wait
        while True:
            missing = tuple(b for b in self.fetch([*parents, own]) if b != own)
            if not missing or self.remote is None:
                return missing
            if time.monotonic() >= deadline or stop():
                raise errors.WorktreeError(
                    f"parent branch {', '.join(missing)} is neither in {self.repo.working_dir} "
                    f"nor on remote {self.remote!r}; set `remote` on every host so finished "
                    "branches are pushed"
                )
            logger.info("waiting for %s to reach %s", ", ".join(missing), self.remote)
            time.sleep(1.0)

    def _tracking(self, branch: str) -> str:
        return f"refs/remotes/{self.remote}/{branch}"

    def _adopt(self, branch: str) -> None:
        tracking = self._tracking(branch)
        if not self.branch_exists(branch):
            self._git("branch", "--quiet", "--no-track", branch, tracking)
        elif self._is_ancestor(tracking, branch):
            return  # up to date, or ahead of the remote
        elif not self._is_ancestor(branch, tracking):
            logger.warning("%s has commits %s lacks; kept the local branch", branch, self.remote)
        elif branch in self._registered().values():
            logger.warning("%s is checked out in a worktree; not fast-forwarded", branch)
        else:
            self._git("branch", "--quiet", "--force", "--no-track", branch, tracking)

    def _is_ancestor(self, branch: str, target: str) -> bool:
        try:
            self._git("merge-base", "--is-ancestor", branch, target)
        except errors.WorktreeError:
            return False
        return True
