"""Where the board is and how the dispatcher behaves.

Precedence: explicit arguments (CLI flags) > KANBAN_* environment > `.kanban/config.toml`
> defaults. The board is found like git finds its repository: walk up from the current
directory to the first `.kanban/`; `kanban init` creates one at the git repository root.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kanban import agentlog, clock, errors

STATE_DIR = ".kanban"
BOARD_FILE = "board.db"
CONFIG_FILE = "config.toml"


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    db_url: str
    state_dir: Path  # logs, config, local wake-ups
    repo: Path | None  # the git repository whose cards run in worktrees
    host_id: str
    actor: str
    lease_ttl: float = 60.0  # a run whose heartbeat is older than this is reclaimed
    heartbeat_interval: float = 10.0  # the supervisor renews the lease this often
    tick_interval: float = 60.0  # the dispatcher's periodic tick (it also wakes on changes)
    max_workers: int = 4  # running cards at once on this host
    max_running: int | None = None  # running cards at once on the whole board (all hosts)
    max_attempts: int = 3  # when neither card nor profile says
    backoff_base: float = 30.0  # first retry after about this long, doubling, with jitter
    backoff_cap: float = 1800.0
    worktree_root: Path | None = None  # default <repo>/worktrees
    base_branch: str | None = None  # default: the repository's current branch at dispatch
    remote: str | None = None  # push finished branches here (several hosts)
    db_patience: float = 3600.0  # a supervisor retries its fenced writes this long at most
    prep_timeout: float = 600.0  # one git command of a worktree's preparation, hooks included
    web_url: str | None = None  # the web board's base URL: notifications link cards there
    notify_timeout: float = 10.0  # one webhook request or command hook, at most
    notify_retry_for: float = 86400.0  # a delivery is retried with backoff this long, then dead
    # A card with `paths` gets a sparse worktree: the top-level files and the directories its
    # paths lie in (big repositories: less to check out and to keep on disk per card).
    sparse_worktrees: bool = False
    # Supervisors are forked by a fork server that has kanban imported (kanban.forkserver),
    # not started as a fresh Python each; false: always a fresh Python (the fallback anyway).
    fork_server: bool = True
    # A done card's clean worktree is kept in a pool (up to max_workers trees) and reset for
    # the next card instead of `git worktree add` (big repositories: no new checkout, no new
    # disk). Off by default: on a small repository it saves milliseconds, and pooled trees
    # hold disk between cards that `kanban gc` would otherwise have freed.
    reuse_worktrees: bool = False
    # A run's log keeps its first quarter and its latest bytes under this (kanban.agentlog).
    max_log_bytes: int = agentlog.DEFAULT_MAX

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def worktrees(self) -> Path:
        if self.worktree_root is not None:
            return self.worktree_root
        if self.repo is None:
            return self.state_dir / "worktrees"
        return self.repo / "worktrees"


# name -> (environment variable, parser)
_DURATIONS = (
    "lease_ttl",
    "heartbeat_interval",
    "tick_interval",
    "backoff_base",
    "backoff_cap",
    "db_patience",
    "prep_timeout",
    "notify_timeout",
    "notify_retry_for",
)
_INTS = ("max_workers", "max_attempts", "max_running")
_PATHS = ("worktree_root",)
_STRINGS = ("base_branch", "remote", "host_id", "actor", "web_url")
_BOOLS = ("sparse_worktrees", "reuse_worktrees", "fork_server")
_SIZES = ("max_log_bytes",)
KNOWN_KEYS = frozenset({"db", "repo", *_DURATIONS, *_INTS, *_PATHS, *_STRINGS, *_BOOLS, *_SIZES})


def find_state_dir(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        candidate = directory / STATE_DIR
        if candidate.is_dir():
            return candidate
    return None


def find_git_root(start: Path) -> Path | None:
    """The main repository (not a linked worktree) that contains `start`."""
    for directory in (start, *start.parents):
        dot_git = directory / ".git"
        if dot_git.is_dir():
            return directory
        if dot_git.is_file():  # a linked worktree: follow it back to the main repository
            text = dot_git.read_text(errors="replace").strip()
            if text.startswith("gitdir:"):
                gitdir = Path(text.split(":", 1)[1].strip())
                common = gitdir / "commondir"
                if common.is_file():
                    main_git = (gitdir / common.read_text().strip()).resolve()
                    return main_git.parent
            return directory
    return None


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise errors.UsageError(f"{path} does not parse as TOML: {exc}; fix or remove it") from exc
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        raise errors.UsageError(
            f"{path}: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(KNOWN_KEYS))}"
        )
    return data


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise errors.UsageError(f"{key} must be true or false, not {value!r}")


def _default_actor(env: Mapping[str, str]) -> str:
    if env.get("KANBAN_RUN_ID"):
        return f"run:{env['KANBAN_RUN_ID']}"
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def load(
    overrides: Mapping[str, Any] | None = None,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    require_board: bool = True,
) -> Settings:
    """Resolve every setting. `overrides` are the caller's flags (None values are ignored)."""
    env = os.environ if env is None else env
    cwd = (cwd or Path.cwd()).absolute()
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    from_env = {
        key: env[f"KANBAN_{key.upper()}"] for key in KNOWN_KEYS if env.get(f"KANBAN_{key.upper()}")
    }
    # A pod's name is its host id (a Deployment sets POD_NAME from metadata.name).
    host_id = env.get("KANBAN_HOST_ID") or env.get("POD_NAME")
    if host_id:
        from_env["host_id"] = host_id

    db_given = given.get("db") or from_env.get("db")
    found = find_state_dir(cwd)
    state_dir: Path | None = None
    if db_given:
        from kanban import db as dbmod

        url = dbmod.resolve_url(db_given)
        path = dbmod.sqlite_path(url)
        if path is not None:
            state_dir = path.parent
        else:
            state_dir = found or (find_git_root(cwd) or cwd) / STATE_DIR
    elif found is not None:
        state_dir = found
        url = ""
    else:
        if require_board:
            raise errors.BoardNotFound(
                "no board here: run `kanban init` inside a git repository, "
                "or pass --db PATH_OR_URL (or set KANBAN_DB)"
            )
        state_dir = (find_git_root(cwd) or cwd) / STATE_DIR
        url = ""

    config = _read_config(state_dir / CONFIG_FILE)
    merged: dict[str, Any] = {**config, **from_env, **given}
    if not db_given:
        from kanban import db as dbmod

        url = dbmod.resolve_url(merged.get("db") or state_dir / BOARD_FILE)

    repo_value = merged.get("repo")
    if repo_value:
        repo: Path | None = Path(repo_value).expanduser().absolute()
    elif state_dir.name == STATE_DIR and (state_dir.parent / ".git").exists():
        repo = state_dir.parent
    else:
        repo = find_git_root(cwd)

    values: dict[str, Any] = {}
    for key in _DURATIONS:
        if key in merged:
            values[key] = _duration(merged[key], key)
    for key in _INTS:
        if key in merged:
            values[key] = _positive_int(merged[key], key)
    for key in _PATHS:
        if key in merged:
            values[key] = Path(merged[key]).expanduser().absolute()
    for key in ("base_branch", "remote"):
        if key in merged:
            values[key] = str(merged[key])
    if merged.get("web_url"):
        values["web_url"] = _web_url(str(merged["web_url"]))
    for key in _BOOLS:
        if key in merged:
            values[key] = _bool(merged[key], key)
    for key in _SIZES:
        if key in merged:
            values[key] = agentlog.parse_size(merged[key], what=key)
    settings = Settings(
        db_url=url,
        state_dir=state_dir,
        repo=repo,
        host_id=str(merged.get("host_id") or socket.gethostname()),
        actor=str(merged.get("actor") or _default_actor(env)),
        **values,
    )
    if settings.backoff_cap < settings.backoff_base:
        raise errors.UsageError(
            f"backoff_cap ({clock.human(settings.backoff_cap)}) is shorter than backoff_base "
            f"({clock.human(settings.backoff_base)}); make the cap at least the base"
        )
    if settings.heartbeat_interval >= settings.lease_ttl:
        raise errors.UsageError(
            f"heartbeat_interval ({settings.heartbeat_interval}s) must be shorter than "
            f"lease_ttl ({settings.lease_ttl}s), or every lease would expire between beats"
        )
    return settings


# The sane range of each duration: a zero interval spins, a zero lease expires at once.
_RANGES = {
    "lease_ttl": (1.0, 7 * 86400.0),
    "heartbeat_interval": (0.05, 86400.0),
    "tick_interval": (0.05, 86400.0),
    "backoff_base": (0.01, 86400.0),
    "backoff_cap": (0.01, 30 * 86400.0),
    "db_patience": (1.0, 30 * 86400.0),
    "prep_timeout": (1.0, 86400.0),
}


def _duration(value: Any, what: str) -> float:
    seconds = clock.parse_duration(value, what=what)
    low, high = _RANGES.get(what, (0.0, float("inf")))
    if not low <= seconds <= high:
        raise errors.UsageError(
            f"{what} = {value!r} is out of range: give {_show(low)} to {_show(high)} "
            f"(in .kanban/config.toml, KANBAN_{what.upper()} or a flag)"
        )
    return seconds


def _show(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else clock.human(seconds)


def _positive_int(value: Any, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise errors.UsageError(f"{what}: expected a whole number, got {value!r}") from None
    if number < 1 or number > 100_000:
        raise errors.UsageError(f"{what}: {number} is out of range (1 to 100000)")
    return number


def _web_url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.UsageError(
            f"web_url {value!r} is not an http(s) URL; give the web board's base, "
            "like http://127.0.0.1:8484"
        )
    return value.strip().rstrip("/")
