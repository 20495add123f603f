"""What every command shares: the board handle, --json, card ids, tokens, the error boundary."""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from kanban import errors

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass
class State:
    """Global options, and the board opened on first use (closed when the command ends)."""

    overrides: dict[str, Any]
    _board: Any = None

    def board(self) -> Any:
        if self._board is None:
            from kanban import api, settings

            config = settings.load(self.overrides)
            check_identity(config)
            self._board = api.connect(config, create=False)
            click.get_current_context().call_on_close(self._board.close)
        return self._board

    def settings(self, *, require_board: bool = True) -> Any:
        from kanban import settings

        return settings.load(self.overrides, require_board=require_board)


pass_state = click.make_pass_decorator(State)


def pass_board(fn: F) -> F:
    """Give the command the opened board as its first argument."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = click.get_current_context().find_object(State)
        assert state is not None
        return fn(state.board(), *args, **kwargs)

    return wrapper  # type: ignore[return-value]


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (times in ISO-8601 UTC) instead of text."
)


def emit_json(value: Any) -> None:
    if hasattr(value, "to_json"):
        value = value.to_json()
    elif isinstance(value, list | tuple):
        value = [v.to_json() if hasattr(v, "to_json") else v for v in value]
    # The text as it is, escaped (ESC is \u001b): a JSON reader gets an agent's text exactly,
    # a terminal showing the JSON no escape sequence (kanban.termtext.dumps).
    from kanban import termtext

    click.echo(termtext.dumps(value, indent=2))


MAX_ID = 2**31 - 1  # ids are INTEGER columns: PostgreSQL's limit, checked before it sees one


class RowId(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    """A row id (card, run, goal, schedule): ASCII digits, 1 to 2**31-1, `#12` accepted."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.name = what.upper()

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        else:
            text = str(value).strip().lstrip("#")
        if not (text.isascii() and text.isdigit()) or int(text) < 1:
            self.fail(f"a {self.what} id is a positive number like 12, not {value!r}", param, ctx)
        if len(text) > 10 or int(text) > MAX_ID:
            self.fail(f"no {self.what} has id {text} (ids go up to {MAX_ID})", param, ctx)
        return int(text)


CardId = RowId
CARD = RowId("card")
RUN = RowId("run")
GOAL = RowId("goal")
SCHEDULE = RowId("schedule")


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    """A duration with its unit: `90s`, `30m`, `2h`, `1h30m`, `250ms`. A bare number is
    refused (is `--timeout 5` five seconds or five minutes?)."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if text.replace(".", "", 1).isdigit():
            self.fail(f"{text!r} has no unit: write {text}s, {text}m or {text}h", param, ctx)
        from kanban import clock

        try:
            clock.parse_duration(text, what=param.name if param and param.name else "duration")
        except errors.UsageError as exc:
            self.fail(exc.message, param, ctx)
        return text


DURATION = Duration()

MAX_NAME = 255  # names (workers, actors, hosts) are VARCHAR(255) columns


class Name(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    """A one-line name of at most 255 characters (who claims, who acts)."""

    name = "NAME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if not text or len(text) > MAX_NAME or not text.isprintable():
            self.fail(
                f"a name is one line of 1 to {MAX_NAME} printable characters, not "
                f"{len(text)} characters",
                param,
                ctx,
            )
        return text


NAME = Name()


def check_identity(config: Any) -> None:
    """The actor and host id go into VARCHAR(255) columns on every write: say so first."""
    for what, env, value in (
        ("actor", "KANBAN_ACTOR", config.actor),
        ("host id", "KANBAN_HOST_ID", config.host_id),
    ):
        if len(value) > MAX_NAME or not value.isprintable():
            raise errors.UsageError(
                f"the {what} ({env} or `{what.replace(' ', '_')}` in .kanban/config.toml) is "
                f"{len(value)} characters; give one line of at most {MAX_NAME}"
            )


class Usd(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    """An amount in US dollars: `2.50` or `$2.50`."""

    name = "USD"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        text = str(value).strip().removeprefix("$").replace(",", "")
        try:
            amount = float(text)
        except ValueError:
            self.fail(f"an amount in USD is a number like 2.50, not {value!r}", param, ctx)
        if not 0 < amount < float("inf"):
            self.fail(f"an amount in USD must be above 0, not {value!r}", param, ctx)
        return amount


USD = Usd()


def card_from_env(card: int | None) -> int:
    """CARD may be omitted inside an agent's run: it defaults to $KANBAN_CARD_ID."""
    if card is not None:
        return card
    env = os.environ.get("KANBAN_CARD_ID")
    if env and env.isdigit():
        return int(env)
    raise errors.UsageError(
        "which card? give its id (or run inside an agent, where KANBAN_CARD_ID is set)"
    )


def token_for(card: int, token: str | None) -> str | None:
    """--token, else $KANBAN_TOKEN when the card is the agent's own card."""
    if token:
        return token
    if os.environ.get("KANBAN_CARD_ID") == str(card):
        return os.environ.get("KANBAN_TOKEN") or None
    return None


def read_text_arg(value: str | None) -> str | None:
    """`-` means read standard input."""
    if value == "-":
        data = sys.stdin.buffer.read()
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise errors.UsageError("standard input is not UTF-8 text") from None
    return value


class KanbanError(click.ClickException):
    """A domain error on its way out: one line on stderr, its own exit code."""

    def __init__(self, error: errors.KanbanError) -> None:
        super().__init__(error.message)
        self.exit_code = error.exit_code  # type: ignore[misc]  # click declares a class default

    def show(self, file: Any = None) -> None:
        click.echo(f"kanban: {self.message}", err=True)


class JsonError(click.ClickException):
    """Any refusal under --json: one JSON object on stderr, the same exit code as in text."""

    def __init__(self, message: str, *, exit_code: int, kind: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares a class default
        self.kind = kind

    def show(self, file: Any = None) -> None:
        payload = {"error": self.message, "exit_code": self.exit_code, "kind": self.kind}
        from kanban import termtext

        click.echo(termtext.dumps(payload), err=True)


def wants_json(ctx: click.Context) -> bool:
    """--json among the words not yet parsed by this group (options before a `--` only)."""
    words = [*getattr(ctx, "_protected_args", ()), *ctx.args]  # click 9: all in args
    if "--" in words:
        words = words[: words.index("--")]
    return "--json" in words


def as_json_error(exc: click.ClickException) -> JsonError:
    if isinstance(exc, JsonError):
        return exc
    if isinstance(exc, click.UsageError):
        message = exc.format_message()
        if exc.ctx is not None:
            message += f" (see `{exc.ctx.command_path} --help`)"
        return JsonError(message, exit_code=exc.exit_code, kind="UsageError")
    return JsonError(exc.format_message(), exit_code=exc.exit_code, kind=type(exc).__name__)


class Group(click.Group):
    """A click group whose commands turn KanbanError into a clean message and exit code,
    a JSON object on stderr under --json."""

    def invoke(self, ctx: click.Context) -> Any:
        json_mode = wants_json(ctx)
        try:
            return super().invoke(ctx)
        except errors.KanbanError as exc:
            if json_mode:
                raise JsonError(
                    exc.message, exit_code=exc.exit_code, kind=type(exc).__name__
                ) from exc
            raise KanbanError(exc) from exc
        except click.ClickException as exc:
            if json_mode:
                raise as_json_error(exc) from exc
            raise

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order they were added: by topic, not alphabet
