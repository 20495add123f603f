"""Commands for working a card: claim, heartbeat, complete, block, fail, and a person's moves."""

from __future__ import annotations

import sys
from typing import Any

import click

from kanban.cli import render
from kanban.cli._common import (
    CARD,
    DURATION,
    NAME,
    card_from_env,
    emit_json,
    json_option,
    pass_board,
    token_for,
)

token_option = click.option(
    "--token",
    envvar=None,
    help="The run's lease token (default: $KANBAN_TOKEN when CARD is $KANBAN_CARD_ID).",
)


@click.command()
@click.option("--profile", "-P", help="Only cards for this profile.")
@click.option("--card", type=CARD, help="Claim this card (if it is ready).")
@click.option("--worker", type=NAME, help="Who is claiming (shown in history; default: you).")
@click.option(
    "--ttl",
    type=DURATION,
    help="Lease length with its unit (30s, 5m), renewed by `kanban heartbeat` (default 60s).",
)
@json_option
@pass_board
def claim(
    board: Any,
    profile: str | None,
    card: int | None,
    worker: str | None,
    ttl: str | None,
    as_json: bool,
) -> None:
    """Claim the best ready card by hand (highest priority, then oldest).

    Prints the card and the run's lease token; pass the token to `heartbeat`, `complete`,
    `block` and `fail`. Exits 1 when no card is ready.

    \b
    Example:
      kanban claim --profile shell --json
    """
    won = board.claim(profile=profile, worker=worker, ttl=ttl, card_id=card)
    if won is None:
        if as_json:
            click.echo("null")
        else:
            click.echo("no card is ready to claim", err=True)
        sys.exit(1)
    if as_json:
        emit_json(won)
    else:
        click.echo(f"claimed card {won.card_id}: {won.card.title}")
        click.echo(f"run {won.run_id}, attempt {won.attempt}, token {won.token}")
        click.echo(
            f"lease until {render.ago(won.lease_expires_at)}; renew with "
            f"`kanban heartbeat {won.card_id} --token {won.token}`"
        )


@click.command()
@click.argument("card", type=CARD, required=False)
@token_option
@json_option
@pass_board
def heartbeat(board: Any, card: int | None, token: str | None, as_json: bool) -> None:
    """Renew a run's lease. Fails with 'lease lost' (exit 5) if the run is no longer current.

    \b
    Example:
      kanban heartbeat 12 --token 3f2a...
    """
    card = card_from_env(card)
    run = board.heartbeat(card, token=_need_token(card, token))
    if as_json:
        emit_json(run)
    else:
        click.echo(f"lease of card {card} renewed until {render.ago(run.lease_expires_at)}")


def _need_token(card: int, token: str | None) -> str:
    found = token_for(card, token)
    if not found:
        from kanban import errors

        raise errors.UsageError("give the run's --token (printed by `kanban claim`)")
    return found


@click.command()
@click.argument("card", type=CARD, required=False)
@token_option
@click.option("--summary", "-m", help="What was done: the next cards' agents read it.")
@json_option
@pass_board
def complete(
    board: Any, card: int | None, token: str | None, summary: str | None, as_json: bool
) -> None:
    """Mark a card done (or `review`, if it asked for one) and start its children.

    With a token (an agent's own run) the run ends `done`; without, a person completes the
    card and any live run is closed. Inside an agent, CARD and the token come from the
    environment.

    \b
    Examples:
      kanban complete --summary "Parser written; see src/csv/parse.py"
      kanban complete 12       # a person approves a card in review
    """
    card = card_from_env(card)
    done = board.complete(card, token=token_for(card, token), summary=summary)
    _report(done, as_json)


@click.command()
@click.argument("card", type=CARD, required=False)
@token_option
@click.option("--reason", "-r", required=True, help="What a person must decide or do.")
@json_option
@pass_board
def block(board: Any, card: int | None, token: str | None, reason: str, as_json: bool) -> None:
    """Stop a card until a person looks at it (`kanban unblock` resumes it).

    \b
    Example:
      kanban block --reason "Which database should the cache use?"
    """
    card = card_from_env(card)
    _report(board.block(card, reason=reason, token=token_for(card, token)), as_json)


@click.command()
@click.argument("card", type=CARD, required=False)
@token_option
@click.option("--error", "-e", required=True, help="What went wrong.")
@json_option
@pass_board
def fail(board: Any, card: int | None, token: str | None, error: str, as_json: bool) -> None:
    """Report a failed attempt (with a token) or give a card up (without one).

    A failed attempt is retried after a backoff until the card's attempts are spent, then
    the card is blocked with the last error. A person failing a card ends it as `failed`.

    \b
    Example:
      kanban fail --error "tests do not compile: missing module yaml"
    """
    card = card_from_env(card)
    _report(board.fail(card, error=error, token=token_for(card, token)), as_json)


def _report(card: Any, as_json: bool) -> None:
    if as_json:
        emit_json(card)
    else:
        extra = f" ({card.reason})" if card.reason and card.status in ("blocked", "ready") else ""
        click.echo(f"card {card.id} is {render.status(card.status)}{extra}")


COMMANDS = [claim, heartbeat, complete, block, fail]  # a person's moves: cli/bulk.py
