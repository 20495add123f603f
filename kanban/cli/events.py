"""`kanban events`: the board's event history, and following it live."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import click

from kanban import clock, errors
from kanban.cli._common import CARD, json_option, pass_board


def _since(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    if text.strip().replace(".", "", 1).isdigit():
        raise errors.UsageError(
            f"--since {text!r} has no unit: write {text.strip()}s, {text.strip()}m or "
            f"{text.strip()}h ago, or an ISO-8601 time"
        )
    try:
        return clock.now() - dt.timedelta(seconds=clock.parse_duration(text, what="--since"))
    except errors.UsageError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise errors.UsageError(
            f"--since {text!r} is neither a duration (10m, 2h) nor an ISO-8601 time "
            "(2026-03-02T09:00:00Z)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until Ctrl-C.")
@click.option("--card", "card_id", type=CARD, help="Only this card's events.")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    help="Only events of this kind (repeat): created, claimed, started, run_ended, status...",
)
@click.option("--since", metavar="TIME", help="Only events since TIME: 10m ago, or ISO-8601.")
@json_option
@pass_board
def events(
    board: Any,
    follow: bool,
    card_id: int | None,
    kinds: tuple[str, ...],
    since: str | None,
    as_json: bool,
) -> None:
    """Print the event history, oldest first: every claim, start, run end (with the error
    and the retry time), status change, comment... whoever made it (any dispatcher, host or
    person). With -f it keeps following, like `tail -f`. --json prints one JSON object a
    line (id, at, card, title, run, kind, actor, data).

    \b
    Examples:
      kanban events --since 1h
      kanban events -f --card 12
      kanban events -f --json --kind run_ended | jq .data.error
    """
    from kanban import eventlog

    follower = eventlog.Follower(
        board, after_id=0, card_id=card_id, kinds=kinds, since=_since(since)
    )
    try:
        while True:
            batch = follower.poll()
            for event, title in batch:
                if as_json:
                    click.echo(json.dumps(eventlog.to_json(event, title=title)))
                else:
                    line = eventlog.describe(event, title=title, now=clock.now())
                    click.echo(f"{clock.iso(event.at)}  #{event.id}  {line}")
            if not batch and not follow:
                return
            if not batch:
                time.sleep(eventlog.POLL_INTERVAL)
    except KeyboardInterrupt:
        return


COMMANDS = [events]
