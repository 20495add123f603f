"""An optional sandbox per profile: `sandbox = "bwrap"` runs the agent under bubblewrap.

What the agent sees inside (later mounts cover earlier ones):

- the whole filesystem read-only, its own /dev, /proc (a new pid namespace) and /tmp;
- its HOME writable, but the user's global git config (~/.gitconfig, ~/.config/git/config)
  read-only: kanban's own git trusts it (kanban.gitsafe);
- the board's state directory (the board file, its logs, other runs' directories) hidden by an
  empty tmpfs, with only this run's directory (its socket, prompt, plan or verdict) bound back;
- the worktrees root hidden the same way, with only this card's worktree bound back, writable;
- the repository's git directory writable (objects, refs: the agent commits), its `hooks`
  directory and `config` read-only (nothing planted there runs later, in anyone's git);
- the network unless the profile says `network = false`.

A profile that asks for it on a machine without bubblewrap is refused by `kanban profiles
check`, and its cards are not claimed on that host (they stay ready; `kanban why` says what is
missing, with the install hint). A run that starts anyway (bwrap removed since the claim) ends
`spawn_failed` with the same hint.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from kanban import errors, gitsafe

SANDBOXES = ("none", "bwrap")
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; Fedora: `dnf install "
    "bubblewrap`), or remove `sandbox` from the profile"
)


def missing(kind: str) -> str | None:
    """Why a sandbox of `kind` cannot run here (None when it can)."""
    if kind == "bwrap" and shutil.which("bwrap") is None:
        return f'sandbox = "bwrap" but bubblewrap (bwrap) is not on PATH: {INSTALL_HINT}'
    return None


def unavailable(profile: str, kind: str) -> str | None:
    """Why a card of `profile` (sandbox `kind`) is not claimed on this host (None: it is)."""
    if kind == "bwrap" and shutil.which("bwrap") is None:
        return (
            f"profile {profile} needs bubblewrap (bwrap), not found on this host (PATH "
            f"searched): {INSTALL_HINT}"
        )
    return None


@dataclasses.dataclass(frozen=True)
class Mounts:
    worktree: Path
    run_dir: Path
    state_dir: Path
    worktrees_root: Path | None
    git_dir: Path | None
    home: Path | None
    network: bool = True


def wrap(argv: Sequence[str], mounts: Mounts) -> list[str]:
    """`argv` run under bwrap with `mounts` (raises SpawnError without bwrap)."""
    problem = missing("bwrap")
    if problem is not None:
        raise errors.SpawnError(problem)
    args = ["bwrap", "--die-with-parent", "--unshare-pid"]
    if not mounts.network:
        args.append("--unshare-net")
    tmp = "/tmp"  # noqa: S108  # the sandbox's own empty /tmp, not a file in the host's
    args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", tmp]
    if mounts.home is not None and mounts.home.is_dir():
        args += ["--bind", str(mounts.home), str(mounts.home)]
    # Kanban's own git trusts the user's global git config (kanban.gitsafe): read-only here,
    # also when HOME above is writable.
    for trusted in gitsafe.trusted_files(os.environ):
        if trusted.is_file():
            args += ["--ro-bind", str(trusted), str(trusted)]
    root, own = mounts.worktrees_root, ["--bind", str(mounts.worktree), str(mounts.worktree)]
    if root is not None and _inside(mounts.worktree, root):
        args += ["--tmpfs", str(root), *own]  # hide the others, then show this one
    else:  # a shared or scratch workspace: show it, then hide the worktrees inside it
        args += own + (["--tmpfs", str(root)] if root is not None and root.is_dir() else [])
    if mounts.git_dir is not None and mounts.git_dir.is_dir():
        hooks = mounts.git_dir / "hooks"
        hooks.mkdir(exist_ok=True)  # else the agent could create it, writable
        args += ["--bind", str(mounts.git_dir), str(mounts.git_dir)]
        args += ["--ro-bind", str(hooks), str(hooks)]
        config = mounts.git_dir / "config"
        if config.is_file():
            args += ["--ro-bind", str(config), str(config)]
    # Last, so no bind above shows it again: the board, its logs, other runs; this run's own.
    args += ["--tmpfs", str(mounts.state_dir), "--bind", str(mounts.run_dir), str(mounts.run_dir)]
    args += ["--chdir", str(mounts.worktree), "--", *argv]
    return args


def git_common_dir(worktree: Path) -> Path | None:
    """The repository's shared git directory of `worktree` (None outside git)."""
    dot_git = worktree / ".git"
    if dot_git.is_dir():
        return dot_git.resolve()
    if dot_git.is_file():  # a linked worktree: "gitdir: <common>/worktrees/<name>"
        text = dot_git.read_text().strip()
        if text.startswith("gitdir:"):
            linked = Path(text.removeprefix("gitdir:").strip())
            linked = linked if linked.is_absolute() else (worktree / linked)
            common = linked / "commondir"
            if common.is_file():
                return (linked / common.read_text().strip()).resolve()
            return linked.parent.parent.resolve()
    return None


def _inside(path: Path, root: Path) -> bool:
    try:
        return os.path.commonpath([path.resolve(), root.resolve()]) == str(root.resolve())
    except ValueError:
        return False
