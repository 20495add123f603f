"""Kanban's own git runs no program that the repository's configuration names.

An agent can write the repository's shared configuration (`.git/config`, the worktrees'
`config.worktree`, and any file they include): a filter (`filter.X.clean/smudge/process`
with `* filter=X` in a `.gitattributes`), a merge or diff driver, `core.fsmonitor`,
`core.hooksPath`, `core.sshCommand`, a credential helper, an upload or receive pack command.
Kanban's git (worktree add, merging parents, committing leftovers, `kanban merge`, pushes)
runs outside any sandbox with kanban's environment, so each of those would be code run with
kanban's rights, again for every later card. `options()` gives the `-c` options that override
every such key, given to git as command-line configuration (GIT_CONFIG_COUNT, which git's
own child processes inherit, and which carries a key as is, whatever its name holds):

- always: no hooks, no fsmonitor, no askpass, editors `true`, no external diff, no pager, no
  signing or signature checks, no `ext::` or `git://` transport (core.gitProxy), no
  submodule recursion, and `core.sshCommand` from kanban's environment (`GIT_SSH_COMMAND`,
  which git prefers anyway, or `GIT_SSH`), else the user's global one, else `ssh`;
- `--upload-pack` and `--receive-pack` on kanban's fetch, ls-remote and push (the first
  `remote.<name>.uploadpack` git reads wins, so configuration cannot override it);
- per name, for every filter, merge driver and diff driver the repository's files
  define (read fresh for each command, includes followed whatever their condition): each
  command key they set blanked (a merge driver becomes `git merge-file`, the text merge), then the
  definitions of that name in the user's own system and global config put back (git-lfs,
  installed globally, keeps working);
- credential helpers: when the repository's files name one, the list is reset and the
  user's global and system helpers are given again.

The user's system and global files are trusted: an agent outside a sandbox can write them
(it runs as your user), inside the bwrap sandbox they are read-only (kanban.sandbox). See
docs/security.md.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

ALWAYS = (
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.askPass", ""),
    ("core.editor", "true"),
    ("sequence.editor", "true"),
    ("diff.external", ""),
    ("core.alternateRefsCommand", ""),
    ("protocol.ext.allow", "never"),
    ("protocol.git.allow", "never"),  # core.gitProxy: first match wins, so refuse the transport
    ("submodule.recurse", "false"),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("merge.verifySignatures", "false"),
    ("log.showSignature", "false"),
)
# A merge driver kanban cannot trust becomes git's own text merge (conflicts stay conflicts).
TEXT_MERGE = "git merge-file -L ours -L base -L theirs --marker-size=%L %A %O %B"
BLANK = {
    "filter": (("clean", ""), ("smudge", ""), ("process", ""), ("required", "false")),
    "merge": (("driver", TEXT_MERGE), ("recursive", "text")),
    "diff": (("command", ""), ("textconv", "")),
}
# remote.<name>.uploadpack and receivepack: the first value git reads wins, so no override
# reaches them; kanban's fetch, ls-remote and push name the programs themselves.
UPLOAD_PACK = ("--upload-pack=git-upload-pack",)
RECEIVE_PACK = ("--receive-pack=git-receive-pack",)
_NAMED = re.compile(r"^(filter|merge|diff)\.(.+)\.([^.]+)$", re.DOTALL)
_HELPER = re.compile(r"^credential\.(.+\.)?helper$", re.DOTALL)
_INCLUDE = re.compile(r"^include(if\..*)?\.path$", re.DOTALL)
_WORDS = (b"filter", b"merge", b"diff", b"credential", b"include", b"sshcommand")
MAX_DEPTH = 10  # git's own limit on nested includes

Entries = tuple[tuple[str, str], ...]
_cache: dict[Path, tuple[tuple[int, int, int, int], Entries]] = {}


def options(common_dir: Path, *, env: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(key, value) overrides for a git command on the repository whose shared git dir is
    `common_dir`, in the environment `env` (os.environ by default); later ones win."""
    env = os.environ if env is None else env
    trusted = _entries(trusted_files(env), env)
    untrusted = _entries(repository_files(common_dir), env)
    values = list(ALWAYS)
    if "GIT_SSH_COMMAND" not in env:  # it beats core.sshCommand; GIT_SSH does not
        given = env.get("GIT_SSH")
        ssh = shlex.quote(given) if given else _last(trusted, "core.sshcommand") or "ssh"
        values.append(("core.sshCommand", ssh))
    defined = {(m[1], m[2], m[3]) for k, _ in untrusted if (m := _NAMED.match(k))}
    for section, name in sorted({(s, n) for s, n, _ in defined}):
        # Only the keys the repository sets: an empty `process` would turn off the user's
        # own clean and smudge of the same filter too.
        values += [
            (f"{section}.{name}.{key}", value)
            for key, value in BLANK[section]
            if (section, name, key) in defined
        ]
        values += [
            (key, value)
            for key, value in trusted
            if (m := _NAMED.match(key)) and (m[1], m[2]) == (section, name)
        ]
    if any(_HELPER.match(k) for k, _ in untrusted):
        values.append(("credential.helper", ""))  # an empty helper clears the list so far
        values += [(k, v) for k, v in trusted if _HELPER.match(k)]
    return values


def environment(common_dir: Path, *, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (os.environ by default) with `options()` added to its command-line
    configuration, after any it has already: the environment of one kanban git command."""
    base = dict(os.environ if env is None else env)
    try:
        start = int(base.get("GIT_CONFIG_COUNT") or 0)
    except ValueError:
        start = 0
    pairs = options(common_dir, env=base)
    for i, (key, value) in enumerate(pairs, start):
        base[f"GIT_CONFIG_KEY_{i}"], base[f"GIT_CONFIG_VALUE_{i}"] = key, value
    base["GIT_CONFIG_COUNT"] = str(start + len(pairs))
    base["GIT_TERMINAL_PROMPT"] = "0"  # nobody is there to answer
    return base


def repository_files(common_dir: Path) -> list[Path]:
    """Every configuration file of the repository git may read: the shared config and every
    worktree's config.worktree (whether or not extensions.worktreeConfig is on)."""
    common_dir = common_dir.absolute()
    found = [common_dir / "config", common_dir / "config.worktree"]
    with contextlib.suppress(OSError):
        found += sorted((common_dir / "worktrees").glob("*/config.worktree"))
    return found


def trusted_files(env: Mapping[str, str]) -> list[Path]:
    """The user's own configuration: system (unless GIT_CONFIG_NOSYSTEM) and global."""
    files = []
    if not env.get("GIT_CONFIG_NOSYSTEM"):
        files.append(Path(env.get("GIT_CONFIG_SYSTEM") or "/etc/gitconfig"))
    if env.get("GIT_CONFIG_GLOBAL"):
        return [*files, Path(env["GIT_CONFIG_GLOBAL"])]
    home = Path(env.get("HOME") or Path.home())
    xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    return [*files, xdg / "git" / "config", home / ".gitconfig"]


def _entries(files: Iterable[Path], env: Mapping[str, str]) -> Entries:
    """(key, value) of `files` in order, each include followed where it stands."""
    out: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def walk(path: Path, depth: int) -> None:
        if depth > MAX_DEPTH or path in seen:
            return
        seen.add(path)
        for key, value in _read(path):
            if _INCLUDE.match(key):
                walk(_include_path(value, base=path.parent, env=env), depth + 1)
            else:
                out.append((key, value))

    for path in files:
        walk(path, 0)
    return tuple(out)


def _include_path(value: str, *, base: Path, env: Mapping[str, str]) -> Path:
    if value.startswith("~/"):
        return Path(env.get("HOME") or Path.home()) / value[2:]
    path = Path(value)
    return path if path.is_absolute() else base / path


def _read(path: Path) -> Entries:
    """The entries of one file as git itself parses them (no includes); cached while the
    file is unchanged."""
    path = path.absolute()
    try:
        st = path.stat()
    except OSError:
        return ()
    stamp = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
    cached = _cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        text = path.read_bytes().lower()
    except OSError:
        return ()
    if not any(word in text for word in _WORDS):
        # Section and key names are plain letters in a config file (no escapes), so a file
        # without these words sets none of the keys read here: no git process to ask.
        _cache[path] = (stamp, ())
        return ()
    done = subprocess.run(
        ["git", "config", "--file", str(path), "--null", "--list"],
        cwd="/",
        capture_output=True,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"},
        check=False,
    )
    entries: list[tuple[str, str]] = []
    for record in done.stdout.decode(errors="surrogateescape").split("\0"):
        if record:
            key, _, value = record.partition("\n")
            entries.append((key, value))
    if done.returncode != 0 and not entries:
        # A file git cannot parse makes git refuse to run at all: nothing of it runs.
        entries = []
    _cache[path] = (stamp, tuple(entries))
    return tuple(entries)


def _last(entries: Entries, key: str) -> str | None:
    found = [v for k, v in entries if k == key]
    return found[-1] if found else None
