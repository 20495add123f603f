"""Commands that fix a card in place: edit, unarchive."""

from __future__ import annotations

from typing import Any

import click

from kanban.cli import render
from kanban.cli._choices import agent_choice_options
from kanban.cli._common import (
    CARD,
    DURATION,
    USD,
    emit_json,
    json_option,
    pass_board,
    read_text_arg,
)


@click.command()
@click.argument("card", type=CARD)
@click.option("--title", help="A new title (one line).")
@click.option("--body", "-b", help="A new body; '-' reads standard input.")
@click.option("--priority", type=int, help="Higher runs first among ready cards.")
@click.option("--profile", "-P", help="Another agent profile (it must load: `kanban profiles ls`).")
@click.option(
    "--path",
    "paths",
    multiple=True,
    help="Replace its path globs (repeat for several); --no-paths removes them.",
)
@click.option("--no-paths", is_flag=True, help="Remove its path globs.")
@click.option("--max-attempts", type=click.IntRange(1, 100), help="Attempts before it is blocked.")
@click.option("--timeout", type=DURATION, help="Per-run limit with its unit: 90s, 30m, 2h.")
@click.option("--max-cost", type=USD, help="Cost cap in USD over all its runs.")
@click.option(
    "--review/--no-review", default=None, help="Stop in `review` for a person when done, or not."
)
@agent_choice_options
@click.option("--no-model", is_flag=True, help="Run it with its profile's default model again.")
@json_option
@pass_board
def edit(
    board: Any,
    card: int,
    title: str | None,
    body: str | None,
    priority: int | None,
    profile: str | None,
    paths: tuple[str, ...],
    no_paths: bool,
    max_attempts: int | None,
    timeout: str | None,
    max_cost: float | None,
    review: bool | None,
    model: str | None,
    agent_args: tuple[str, ...],
    agent_env: tuple[tuple[str, str], ...],
    no_model: bool,
    as_json: bool,
) -> None:
    """Change a card in place: its id, links, runs and history stay.

    Each edit is recorded in the card's history with what changed (`kanban show`). A running
    card refuses --title, --body, --profile, --path and --timeout (its agent already works
    from them: change them when the run ends, or cancel it first); --priority, --max-attempts
    (from the next attempt), --max-cost and --review apply to it; --model, --arg and --env
    apply from its next attempt (its profile must allow them). An archived card is brought
    back with `kanban unarchive` first.

    \b
    Examples:
      kanban edit 12 --title "Write the CSV parser" --priority 5
      kanban edit 12 --profile shell --path 'src/csv/**' --path tests/test_csv.py
      kanban edit 12 --body - < spec.md
      kanban edit 12 --model claude-opus-4-8 --arg --effort=high
    """
    from kanban import editing

    if paths and no_paths:
        from kanban import errors

        raise errors.UsageError("give --path or --no-paths, not both")
    given = {
        "title": title,
        "body": read_text_arg(body),
        "priority": priority,
        "profile": profile,
        "paths": list(paths) if paths else None,
        "max_attempts": max_attempts,
        "timeout": timeout,
        "max_cost_usd": max_cost,
        "review": review,
    }
    changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if no_paths:
        changes["paths"] = None
    if model and no_model:
        from kanban import errors

        raise errors.UsageError("give --model or --no-model, not both")
    choices = editing.choices(model="" if no_model else model, args=agent_args, env=agent_env)
    updated, diff = editing.edit(board, card, choices=choices, **changes)
    if as_json:
        emit_json({"card": updated.to_json(), "changed": diff})
    elif diff:
        click.echo(f"card {card} edited: {editing.describe(diff)}")
    else:
        click.echo(f"card {card} unchanged: it already had those values")


@click.command()
@click.argument("cards", type=CARD, nargs=-1, required=True)
@json_option
@pass_board
def unarchive(board: Any, cards: tuple[int, ...], as_json: bool) -> None:
    """Bring archived cards back to the state they were archived from.

    A card archived while it waited comes back `ready` (or `todo` while a parent is not
    done). All of them or none: one card that is not archived refuses the lot, naming it.

    \b
    Example:
      kanban unarchive 12 15
    """
    from kanban import bulk

    done = bulk.apply(board, sorted(set(cards)), verb="unarchive")
    if as_json:
        emit_json(done)
    else:
        for item in done:
            click.echo(f"card {item.id} is {render.status(item.status)} again")


COMMANDS = [edit, unarchive]
