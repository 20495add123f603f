"""Commands for operators: status."""

from __future__ import annotations

from typing import Any

import click

from kanban import clock
from kanban.cli import render
from kanban.cli._common import emit_json, json_option, pass_board


@click.command()
@json_option
@pass_board
def status(board: Any, as_json: bool) -> None:
    """How the board is doing: cards per state, running runs, the oldest waiting card.

    \b
    Example:
      kanban status
    """
    summary = board.status()
    if as_json:
        emit_json(summary)
        return
    counts = "  ".join(
        f"{render.status(name)} {count}" for name, count in summary.counts.items() if count
    )
    click.echo(f"cards: {counts or 'none'}")
    if summary.oldest_ready_at is not None:
        click.echo(
            f"ready: {summary.ready_waiting} claimable now, oldest waiting "
            f"{clock.human((summary.now - summary.oldest_ready_at).total_seconds())}"
        )
    if summary.running:
        click.echo(f"running ({len(summary.running)}):")
        for run in summary.running:
            click.echo(f"  card {run.card_id:>5}  {render.run_line(run, summary.now)}")


COMMANDS = [status]
