"""Agent profiles: how to run one kind of agent. `profiles/NAME.toml` plus an optional persona.

Lookup order: the board repository's `profiles/`, the user's config dir
(`$XDG_CONFIG_HOME/kanban/profiles`, default `~/.config/kanban/profiles`), then the profiles
shipped with kanban. The first file with the name wins.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import string
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from kanban import clock, errors, outputs

PLACEHOLDERS = frozenset(
    {
        "prompt",  # the whole prompt as one argument
        "prompt_file",  # path of a file holding the prompt
        "card_id",
        "run_id",
        "attempt",
        "title",
        "worktree",  # the directory the agent works in
        "branch",
        "git_dir",  # the worktree's own git dir (its index, HEAD); the worktree if none
        "git_common_dir",  # the repository's git dir (objects, refs); the worktree if none
        "run_dir",  # the run's private directory, outside the worktree (agents' scratch files)
        "python",  # the Python running kanban (for agents written in Python)
    }
)
# Only in `model_args`: the card's model. Only in `resume`: the agent's session to resume.
MODEL_PLACEHOLDER = "model"
SESSION_PLACEHOLDER = "session"
PROMPT_MODES = ("argv", "stdin", "file")
WORKSPACES = ("worktree", "shared", "none")
DEFAULT_ENV_ALLOW = ("HOME", "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "USER", "TMPDIR", "TZ")

_KNOWN_KEYS = {
    "description",
    "command",
    "prompt",
    "concurrency",
    "timeout",
    "max_attempts",
    "workspace",
    "env_allow",
    "env",
    "rate_limit_exit_codes",
    "rate_limit_cooldown",
    "persona",
    "output",
    "idle_timeout",
    "auth_patterns",
    "rate_limit_patterns",
    "noise_patterns",
    "max_cost_usd",
    "token_prices",
    "scratch",
    "resume",
    "model_args",
    "card_args",
    "card_env",
    "model_prices",
}
_PATTERN_KEYS = ("auth_patterns", "rate_limit_patterns", "noise_patterns")


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    name: str
    command: tuple[str, ...]
    description: str = ""
    prompt: Literal["argv", "stdin", "file"] = "file"
    concurrency: int = 2
    timeout: float = 3600.0
    max_attempts: int = 3
    workspace: Literal["worktree", "shared", "none"] = "worktree"
    env_allow: tuple[str, ...] = DEFAULT_ENV_ALLOW
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    rate_limit_exit_codes: tuple[int, ...] = (75,)
    rate_limit_cooldown: float = 300.0
    persona: str = ""
    # How to read the agent's output (kanban.outputs) and judge how it ended (kanban.outcomes).
    output: str = "text"
    idle_timeout: float | None = None  # no output for this long: the run stalled
    auth_patterns: tuple[str, ...] = ()  # cannot log in / not configured: block at once
    rate_limit_patterns: tuple[str, ...] = ()  # a failed run saying so requeues after cooldown
    noise_patterns: tuple[str, ...] = ()  # lines that are not progress (reconnect loops...)
    max_cost_usd: float | None = None  # cost cap for each card of this profile
    token_prices: tuple[float, float] | None = None  # USD per million tokens in, out
    # Files the agent leaves in its worktree that are not work (caches): globs at the top of
    # the worktree, removed when the agent exits, before leftover changes are committed.
    scratch: tuple[str, ...] = ()
    # How to go on with the agent's own session when a card comes back to it (retry, an
    # answer, review sent back): a command like `command`, with {session}. Empty: it cannot.
    resume: tuple[str, ...] = ()
    # Per-card choices: `model_args` (with {model}) is added when a card names a model;
    # `card_args` lists the options a card may add, `card_env` the variables it may set.
    model_args: tuple[str, ...] = ()
    card_args: tuple[str, ...] = ()
    card_env: tuple[str, ...] = ()
    model_prices: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    path: Path | None = None
    source: str = ""  # "repo", "user" or "shipped"

    @property
    def executable(self) -> str:
        return self.command[0].replace("{python}", sys.executable)

    def argv(
        self,
        values: Mapping[str, str],
        *,
        model: str | None = None,
        extra: Sequence[str] = (),
        session: str | None = None,
    ) -> list[str]:
        """The command (or, with `session`, the resume command) with placeholders filled,
        then the card's model arguments and extra arguments. Values are inserted literally
        (never parsed again, never seen by a shell)."""
        formatter = string.Formatter()
        filled = {**values, "python": sys.executable}
        if session is not None:
            filled[SESSION_PLACEHOLDER] = session
        template = self.resume if session is not None else self.command
        argv = [formatter.vformat(arg, (), filled) for arg in template]
        if model:
            argv += [
                formatter.vformat(arg, (), {MODEL_PLACEHOLDER: model}) for arg in self.model_args
            ]
        return argv + list(extra)

    def price(self, model: str | None) -> tuple[float, float] | None:
        """USD per million tokens (in, out) for `model`, else the profile's own prices."""
        if model is not None and model in self.model_prices:
            return self.model_prices[model]
        return self.token_prices

    def check_card_choices(
        self, *, model: str | None, args: Sequence[str], env: Mapping[str, str]
    ) -> None:
        """Refuse a card's model, arguments or variables this profile does not allow."""
        if model is not None and not self.model_args:
            raise errors.ProfileError(
                f"profile {self.name} takes no per-card model (it has no `model_args`)"
            )
        for arg in args:
            name = arg.split("=", 1)[0]
            if name not in self.card_args:
                allowed = ", ".join(self.card_args) or "none"
                raise errors.ProfileError(
                    f"profile {self.name} does not let a card pass {arg!r}; allowed "
                    f"(`card_args`): {allowed}"
                )
        for key in env:
            if key not in self.card_env:
                allowed = ", ".join(self.card_env) or "none"
                raise errors.ProfileError(
                    f"profile {self.name} does not let a card set {key}; allowed "
                    f"(`card_env`): {allowed}"
                )

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["path"] = str(self.path) if self.path else None
        data["env"] = dict(self.env)
        return data


def shipped_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "_profiles", here.parent / "profiles"):
        if candidate.is_dir():
            return candidate
    return here / "_profiles"


def user_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kanban" / "profiles"


def search_path(repo: Path | None) -> list[tuple[str, Path]]:
    dirs: list[tuple[str, Path]] = []
    if repo is not None:
        dirs.append(("repo", repo / "profiles"))
    dirs.append(("user", user_dir()))
    dirs.append(("shipped", shipped_dir()))
    seen: set[Path] = set()
    unique = []
    for source, directory in dirs:
        resolved = directory.resolve()
        if resolved not in seen:
            seen.add(resolved)
            unique.append((source, directory))
    return unique


def check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name) or ".." in name:
        raise errors.ProfileError(
            f"profile name {name!r} is not valid: letters, digits, '.', '-' and '_' only"
        )
    return name


def find(name: str, *, repo: Path | None) -> Path:
    check_name(name)
    for _source, directory in search_path(repo):
        candidate = directory / f"{name}.toml"
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(available(repo=repo))) or "none"
    raise errors.ProfileError(f"unknown profile {name!r}; known profiles: {known}")


def require(name: str, *, repo: Path | None) -> Profile:
    """A profile a card may be given: known here and loading cleanly. `kanban add`, `edit`,
    `goal add` and `cron add` all refuse through this (an unknown name with the known list)."""
    path = find(name, repo=repo)
    good, bad = load_all(repo=repo)
    if name in good:
        return good[name]
    usable = ", ".join(sorted(good)) or "none"
    raise errors.ProfileError(
        f"profile {name!r} does not load: {bad.get(name, 'unknown error')}; fix {path} "
        f"(`kanban profiles check {name}`) or choose another: {usable}"
    )


def available(*, repo: Path | None) -> dict[str, Path]:
    """name -> file, the first found in lookup order."""
    return {name: path for name, (_source, path) in _found(repo).items()}


def _found(repo: Path | None) -> dict[str, tuple[str, Path]]:
    """name -> (where it was found, file), the first found in lookup order."""
    found: dict[str, tuple[str, Path]] = {}
    for source, directory in search_path(repo):
        if directory.is_dir():
            for path in sorted(directory.glob("*.toml")):
                found.setdefault(path.stem, (source, path))
    return found


def load(name: str, *, repo: Path | None) -> Profile:
    path = find(name, repo=repo)
    source = next(
        (s for s, d in search_path(repo) if path.parent.resolve() == d.resolve()), "unknown"
    )
    return parse(name, path.read_bytes(), path=path, source=source)


_Loaded = tuple[dict[str, Profile], dict[str, str]]
_cache: dict[Path | None, tuple[tuple[Any, ...], _Loaded]] = {}


def _signature(repo: Path | None) -> tuple[Any, ...]:
    """What the profile directories hold, down to each file's mtime and size."""
    seen = []
    for _source, directory in search_path(repo):
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.name.endswith((".toml", ".md")):
                try:
                    stat = entry.stat()
                except OSError:  # a dangling link: load_all reports it
                    seen.append((entry.path, -1, -1))
                    continue
                seen.append((entry.path, stat.st_mtime_ns, stat.st_size))
    return tuple(seen)


def load_all(*, repo: Path | None) -> _Loaded:
    """Every available profile, and the errors of those that do not load.

    The dispatcher asks every tick; the files are parsed again only when one of them (or
    the set of them) changed, so an edited profile takes effect at the next tick.
    """
    signature = _signature(repo)
    cached = _cache.get(repo)
    if cached is not None and cached[0] == signature:
        return dict(cached[1][0]), dict(cached[1][1])
    good: dict[str, Profile] = {}
    bad: dict[str, str] = {}
    for name, (source, path) in _found(repo).items():
        try:
            check_name(name)
            good[name] = parse(name, path.read_bytes(), path=path, source=source)
        except errors.ProfileError as exc:
            bad[name] = exc.message
        except OSError as exc:  # unreadable: one bad file never hides the others
            bad[name] = f"profile {path} cannot be read: {exc.strerror or exc}"
    _cache[repo] = (signature, (good, bad))
    return dict(good), dict(bad)


def parse(name: str, raw: bytes, *, path: Path | None = None, source: str = "") -> Profile:
    where = str(path) if path else name
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise errors.ProfileError(f"profile {where} does not parse: {exc}") from exc
    unknown = set(data) - _KNOWN_KEYS
    if unknown:
        raise errors.ProfileError(
            f"profile {where}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_KNOWN_KEYS))}"
        )
    command = data.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise errors.ProfileError(f"profile {where}: command must be a non-empty list of strings")
    for arg in command:
        _check_placeholders(arg, where)
    prompt = data.get("prompt", "file")
    if prompt not in PROMPT_MODES:
        raise errors.ProfileError(
            f"profile {where}: prompt must be one of {', '.join(PROMPT_MODES)}"
        )
    joined = " ".join(command)
    if prompt == "argv" and "{prompt}" not in joined:
        raise errors.ProfileError(f"profile {where}: prompt = 'argv' needs {{prompt}} in command")
    if prompt == "file" and "{prompt_file}" not in joined:
        pass  # the agent may read $KANBAN_PROMPT_FILE itself
    workspace = data.get("workspace", "worktree")
    if workspace not in WORKSPACES:
        raise errors.ProfileError(
            f"profile {where}: workspace must be one of {', '.join(WORKSPACES)}"
        )
    env = data.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise errors.ProfileError(f"profile {where}: env must be a table of strings")
    env_allow = data.get("env_allow", list(DEFAULT_ENV_ALLOW))
    if not isinstance(env_allow, list) or not all(isinstance(v, str) for v in env_allow):
        raise errors.ProfileError(f"profile {where}: env_allow must be a list of variable names")
    codes = data.get("rate_limit_exit_codes", [75])
    if not isinstance(codes, list) or not all(isinstance(c, int) and 0 < c < 256 for c in codes):
        raise errors.ProfileError(
            f"profile {where}: rate_limit_exit_codes must be exit codes 1-255"
        )
    output = data.get("output", "text")
    if output not in outputs.OUTPUTS:
        raise errors.ProfileError(
            f"profile {where}: output must be one of {', '.join(outputs.OUTPUTS)}"
        )
    patterns = {key: _patterns(data, key, where) for key in _PATTERN_KEYS}
    if data.get("idle_timeout") in (0, "0", "0s"):
        raise errors.ProfileError(
            f"profile {where}: idle_timeout must be more than 0 (leave it out for no limit)"
        )
    persona_text = ""
    persona = data.get("persona")
    if persona is not None:
        if not isinstance(persona, str) or "/" in persona or persona.startswith("."):
            raise errors.ProfileError(f"profile {where}: persona must be a file name beside it")
        persona_path = (path.parent if path else Path.cwd()) / persona
        if not persona_path.is_file():
            raise errors.ProfileError(f"profile {where}: persona file {persona_path} is missing")
        persona_text = persona_path.read_text()
    try:
        return Profile(
            name=name,
            command=tuple(command),
            description=str(data.get("description", "")),
            prompt=prompt,
            concurrency=_int(data, "concurrency", 2, where, 1, 1000),
            timeout=clock.parse_duration(
                data.get("timeout", "1h"), what=f"profile {where}: timeout"
            ),
            max_attempts=_int(data, "max_attempts", 3, where, 1, 100),
            workspace=workspace,
            env_allow=tuple(env_allow),
            env=dict(env),
            rate_limit_exit_codes=tuple(codes),
            rate_limit_cooldown=clock.parse_duration(
                data.get("rate_limit_cooldown", "5m"), what=f"profile {where}: rate_limit_cooldown"
            ),
            persona=persona_text,
            output=output,
            idle_timeout=None
            if data.get("idle_timeout") is None
            else clock.parse_duration(data["idle_timeout"], what=f"profile {where}: idle_timeout"),
            **patterns,
            max_cost_usd=_cost(data, "max_cost_usd", where),
            token_prices=_prices(data, where),
            scratch=_scratch(data, where),
            resume=_resume(data, where),
            model_args=_model_args(data, where),
            card_args=_names(data, "card_args", where, "option names like --max-turns"),
            card_env=_names(data, "card_env", where, "variable names"),
            model_prices=_model_prices(data, where),
            path=path,
            source=source,
        )
    except errors.UsageError as exc:
        raise errors.ProfileError(exc.message) from exc


def _resume(data: Mapping[str, Any], where: str) -> tuple[str, ...]:
    value = data.get("resume", [])
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise errors.ProfileError(f"profile {where}: resume must be a list of strings")
    if not value:
        return ()
    for arg in value:
        _check_placeholders(arg, where, extra={SESSION_PLACEHOLDER})
    if "{session}" not in " ".join(value):
        raise errors.ProfileError(f"profile {where}: resume needs {{session}} in its command")
    return tuple(value)


def _model_args(data: Mapping[str, Any], where: str) -> tuple[str, ...]:
    value = data.get("model_args", [])
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise errors.ProfileError(f"profile {where}: model_args must be a list of strings")
    if value and "{model}" not in " ".join(value):
        raise errors.ProfileError(
            f"profile {where}: model_args needs {{model}}, "
            'e.g. model_args = ["--model", "{model}"]'
        )
    for arg in value:
        _check_placeholders(arg, where, only={MODEL_PLACEHOLDER})
    return tuple(value)


def _names(data: Mapping[str, Any], key: str, where: str, what: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise errors.ProfileError(f"profile {where}: {key} must be a list of {what}")
    return tuple(value)


def _model_prices(data: Mapping[str, Any], where: str) -> dict[str, tuple[float, float]]:
    value = data.get("model_prices", {})
    if not isinstance(value, dict):
        raise errors.ProfileError(
            f"profile {where}: model_prices must be a table of "
            '{ "model" = { input = USD, output = USD } } per million tokens'
        )
    return {
        str(name): _prices({"token_prices": spec}, where) or (0.0, 0.0)
        for name, spec in value.items()
    }


def _scratch(data: Mapping[str, Any], where: str) -> tuple[str, ...]:
    value = data.get("scratch", [])
    if not isinstance(value, list) or not all(
        isinstance(p, str) and p and "/" not in p and p not in (".", "..", ".git") for p in value
    ):
        raise errors.ProfileError(
            f"profile {where}: scratch must be a list of file name globs at the top of the "
            'worktree (no "/", not .git), e.g. scratch = [".aider.tags.cache.v*"]'
        )
    return tuple(value)


def _int(data: Mapping[str, Any], key: str, default: int, where: str, low: int, high: int) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise errors.ProfileError(f"profile {where}: {key} must be a whole number {low}-{high}")
    return value


def _patterns(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise errors.ProfileError(f"profile {where}: {key} must be a list of regular expressions")
    for pattern in value:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise errors.ProfileError(
                f"profile {where}: {key}: {pattern!r} is not a regular expression ({exc})"
            ) from None
    return tuple(value)


def _cost(data: Mapping[str, Any], key: str, where: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < 1e9:
        raise errors.ProfileError(f"profile {where}: {key} must be an amount in USD above 0")
    return float(value)


def _prices(data: Mapping[str, Any], where: str) -> tuple[float, float] | None:
    value = data.get("token_prices")
    if value is None:
        return None
    prices = value if isinstance(value, dict) else {}
    numbers = [prices.get(k) for k in ("input", "output")]
    if set(prices) != {"input", "output"} or not all(
        isinstance(n, int | float) and not isinstance(n, bool) and 0 <= n < 1e6 for n in numbers
    ):
        raise errors.ProfileError(
            f"profile {where}: token_prices must be {{ input = USD, output = USD }} "
            "per million tokens"
        )
    return float(numbers[0]), float(numbers[1])  # type: ignore[arg-type]


def _check_placeholders(
    arg: str,
    where: str,
    *,
    extra: frozenset[str] | set[str] = frozenset(),
    only: frozenset[str] | set[str] | None = None,
) -> None:
    known = set(only) if only is not None else PLACEHOLDERS | set(extra)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(arg) if f is not None]
    except ValueError as exc:
        raise errors.ProfileError(f"profile {where}: bad placeholder in {arg!r}: {exc}") from exc
    for field in fields:
        if field not in known:
            raise errors.ProfileError(
                f"profile {where}: unknown placeholder {{{field}}} in {arg!r}; "
                f"known: {', '.join('{' + p + '}' for p in sorted(known))}"
            )


def check(profile: Profile) -> list[str]:
    """Problems that would stop this profile from running here (empty when it is fine)."""
    problems = []
    exe = profile.executable
    if "{" in exe:
        problems.append(f"the command's first word {exe!r} must be a program, not a placeholder")
    elif shutil.which(exe) is None:
        problems.append(f"{exe!r} is not installed or not on PATH")
    return problems
