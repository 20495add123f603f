"""Commands about money: a card's cost cap."""

from __future__ import annotations

from typing import Any

import click

from kanban.cli import render
from kanban.cli._common import CARD, USD, emit_json, json_option, pass_board


@click.command()
@click.argument("card", type=CARD)
@click.argument("amount", required=False)
@click.option("--none", "remove", is_flag=True, help="Remove the card's own cap.")
@json_option
@pass_board
def cap(board: Any, card: int, amount: str | None, remove: bool, as_json: bool) -> None:
    """Show or set a card's cost cap: what all of its runs may cost together, in USD.

    A run is stopped when the card's total reaches the cap, and the card is blocked with
    "cost cap reached". Raise the cap, then `kanban unblock` it to go on. Without AMOUNT,
    prints what the card has spent against its cap. Without a cap of its own, a card has
    its profile's `max_cost_usd`, if any.

    \b
    Examples:
      kanban cap 12            # spent so far, and the cap
      kanban cap 12 5.00 && kanban unblock 12
      kanban cap 12 --none
    """
    if amount is not None and remove:
        raise click.UsageError("give an AMOUNT or --none, not both")
    if amount is not None or remove:
        value = None if remove else USD.convert(amount, None, click.get_current_context())
        found = board.set_cost_cap(card, value)
    else:
        found = board.get(card)
    spent = board.spend(card_ids=[card])
    if as_json:
        emit_json({"card": card, "max_cost_usd": found.max_cost_usd, "spent": spent.to_json()})
        return
    click.echo(f"card {card}: {render.cost_line(spent, found.max_cost_usd)}")


COMMANDS = [cap]
