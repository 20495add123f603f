"""What every command shares: the board handle, --json, card ids, tokens, the error boundary."""

from __future__ import annotations

import dataclasses
import functools
import json
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

            self._board = api.connect(settings.load(self.overrides), create=False)
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
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


class CardId(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    name = "CARD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lstrip("#")
        if not text.isdigit() or int(text) < 1 or len(text) > 18:
            self.fail(f"a card id is a positive number like 12, not {value!r}", param, ctx)
        return int(text)


CARD = CardId()


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


class Group(click.Group):
    """A click group whose commands turn KanbanError into a clean message and exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.KanbanError as exc:
            raise KanbanError(exc) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order they were added: by topic, not alphabet
