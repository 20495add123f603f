"""Running one git command the way kanban runs them all, and reading a checkout without git.

No repository hooks, fsmonitor or pager (`NO_HOOKS`), the rest of what the repository's
configuration could make git run overridden (kanban.gitsafe), a fallback identity when the
repository has none, its own process group (killed at a time limit or when the caller gives
up), and one `git worktree` command at a time per repository on this host. kanban.worktrees
builds the card-level operations on these; nothing here knows about cards or the board.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import git

from kanban import errors, gitsafe

FALLBACK_IDENTITY = ("kanban", "kanban@localhost")

# Options on every git command kanban runs: no repository hooks, no fsmonitor program, no
# pager. The rest of what the repository's configuration could make git run (filters, merge
# drivers, ssh commands, credential helpers...) is overridden through the environment that
# kanban.gitsafe makes for each command.
NO_HOOKS = ("--no-pager", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")


def execute(
    args: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    common_dir: Path,
    time_limit: float,
    stop: Callable[[], bool],
) -> str:
    """git ARGS in its own process group, so that a hook that hangs is stopped with it:
    at `time_limit`, or as soon as `stop()` says the caller no longer wants it (cancelled).
    A failure raises git.GitCommandError (see `describe`)."""
    argv = ["git", *NO_HOOKS, *args]
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=gitsafe.environment(
            common_dir, env={**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **env}
        ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + time_limit
    while True:
        try:
            out, err = proc.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            late = time.monotonic() > deadline
            if not late and not stop():
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            why = f"took longer than {time_limit:.0f}s" if late else "was stopped"
            raise errors.WorktreeError(
                f"git {' '.join(args[:3])} {why} (a hook that hangs?); its process group "
                "was killed" + ("; raise prep_timeout if it needs longer" if late else "")
            ) from None
    if proc.returncode != 0:
        raise git.GitCommandError(argv, proc.returncode, err, out)
    text = out.decode(errors="replace")
    return text[:-1] if text.endswith("\n") else text


@contextlib.contextmanager
def worktree_lock(common_dir: Path) -> Iterator[None]:
    """One `git worktree` command at a time per repository, across every supervisor on
    this host: while one `worktree add` is half done (its `commondir` not yet written), a
    concurrent `worktree list` or `prune` fails or removes it. Held for one command."""
    lock_path = common_dir / "kanban-worktrees.lock"
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def identity_env(repo: git.Repo) -> dict[str, str]:
    """GIT_AUTHOR_*/GIT_COMMITTER_* of FALLBACK_IDENTITY when the repository's configuration
    names no user; empty when it does."""
    reader = repo.config_reader()
    name = reader.get_value("user", "name", default="")
    email = reader.get_value("user", "email", default="")
    if name and email:
        return {}
    return {
        "GIT_AUTHOR_NAME": FALLBACK_IDENTITY[0],
        "GIT_AUTHOR_EMAIL": FALLBACK_IDENTITY[1],
        "GIT_COMMITTER_NAME": FALLBACK_IDENTITY[0],
        "GIT_COMMITTER_EMAIL": FALLBACK_IDENTITY[1],
    }


def describe(exc: git.GitCommandError) -> str:
    stderr = (exc.stderr or "").strip().replace("stderr: ", "").strip("'\" \n")
    command = (
        " ".join(str(a) for a in exc.command[:4]) if isinstance(exc.command, list) else exc.command
    )
    return f"git failed ({command}): {stderr or exc.status}"


def held_open(path: Path) -> bool:
    """Does any git process have `path` open? (A live git holding its lock.)"""
    import psutil

    target = str(path)
    for proc in psutil.process_iter(["name"]):
        if not str(proc.info.get("name") or "").startswith("git"):
            continue
        try:
            if any(f.path == target for f in proc.open_files()):
                return True
        except psutil.Error:
            continue
    return False


def git_dirs(path: Path) -> tuple[Path, Path] | None:
    """(git dir, common git dir) of the checkout at `path`, read from its `.git` (a pointer
    file in a linked worktree, a directory in a main checkout); None outside git. No git
    process: this runs on every agent start."""
    dotgit = path / ".git"
    if dotgit.is_dir():
        return dotgit, dotgit
    try:
        text = dotgit.read_text()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    own = Path(text.split(":", 1)[1].strip())
    own = own if own.is_absolute() else (path / own).resolve()
    try:
        common = Path((own / "commondir").read_text().strip())
    except OSError:
        return own, own
    return own, (common if common.is_absolute() else (own / common).resolve())


def has_commit(repo: Path) -> bool:
    """Does the repository at `repo` have a commit at HEAD (an unborn branch has none)?"""
    try:
        git.Git(str(repo)).execute(["git", "rev-parse", "--verify", "--quiet", "HEAD^{commit}"])
    except git.GitCommandError:
        return False
    return True


def no_commit_message(repo: Path) -> str:
    return (
        f"the repository {repo} has no commit yet, and every card's branch starts from one; "
        f"make one: git -C {repo} commit --allow-empty -m 'Initial commit'"
    )
