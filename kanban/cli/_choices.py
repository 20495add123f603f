"""The per-card agent options shared by `add` and `edit`: --model, --arg, --env."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class EnvPair(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    name = "KEY=VALUE"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, val = str(value).partition("=")
        if not sep or not key:
            self.fail(f"{value!r} is not KEY=VALUE (for example --env HERMES_MAX_ITER=20)")
        return key, val


def agent_choice_options(fn: F) -> F:
    """--model, --arg (repeat), --env KEY=VALUE (repeat): checked against the profile's
    `model_args`, `card_args` and `card_env`."""
    for option in reversed(
        [
            click.option(
                "--model",
                help="The model its profile runs it with (the profile's `model_args`).",
            ),
            click.option(
                "--arg",
                "agent_args",
                multiple=True,
                help="An extra option for the agent, allowed by the profile's `card_args` "
                "(repeat; e.g. --arg --effort=high).",
            ),
            click.option(
                "--env",
                "agent_env",
                type=EnvPair(),
                multiple=True,
                help="KEY=VALUE for the agent, allowed by the profile's `card_env` (repeat).",
            ),
        ]
    ):
        fn = option(fn)
    return fn
