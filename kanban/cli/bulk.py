"""A person's moves, on one card or many: unblock, retry, cancel, archive.

Each takes card ids or filters (`--status`, `--profile`, `--goal`; `--done` for archive) and
reports every card's result. All or nothing: one card refusing its move changes no card
(see `kanban.bulk`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from kanban.cli import render
from kanban.cli._common import CARD, GOAL, emit_json, json_option, pass_board

F = Callable[..., Any]


def filters(fn: F) -> F:
    for option in reversed(
        [
            click.argument("cards", type=CARD, nargs=-1),
            click.option(
                "--status",
                "-s",
                "statuses",
                multiple=True,
                help="Every card in this state (repeat for several).",
            ),
            click.option("--profile", "-P", help="Every card of this profile (with the states)."),
            click.option("--goal", type=GOAL, help="Every card of this goal (with the states)."),
        ]
    ):
        fn = option(fn)
    return fn


def _run(
    board: Any,
    verb: str,
    cards: tuple[int, ...],
    statuses: tuple[str, ...],
    profile: str | None,
    goal: int | None,
    as_json: bool,
    **kwargs: Any,
) -> None:
    from kanban import bulk

    ids = bulk.select(board, verb=verb, ids=cards, statuses=statuses, profile=profile, goal=goal)
    moved = bulk.apply(board, ids, verb=verb, **kwargs) if ids else []
    _report(moved, as_json)


def _report(moved: list[Any], as_json: bool) -> None:
    if as_json:
        emit_json(moved)
        return
    if not moved:
        click.echo("no card matches; nothing changed")
    for card in moved:
        extra = f" ({card.reason})" if card.reason and card.status in ("blocked", "ready") else ""
        click.echo(f"card {card.id} is {render.status(card.status)}{extra}")


@click.command()
@filters
@click.option("--note", "-m", help="A comment for the next agent (what you decided).")
@json_option
@pass_board
def unblock(
    board: Any,
    cards: tuple[int, ...],
    statuses: tuple[str, ...],
    profile: str | None,
    goal: int | None,
    note: str | None,
    as_json: bool,
) -> None:
    """Send blocked cards back to work with a fresh attempt budget.

    With filters, every blocked card they match. All or nothing: a card that is not blocked
    refuses the lot, naming it.

    \b
    Examples:
      kanban unblock 12 --note "Use PostgreSQL for the cache"
      kanban unblock --profile claude-code
    """
    _run(board, "unblock", cards, statuses, profile, goal, as_json, note=note)


@click.command()
@filters
@click.option("--note", "-m", help="A comment for the next agent (what to do differently).")
@click.option(
    "--now",
    "skip_backoff",
    is_flag=True,
    help="A ready card backing off after a failure may start at once.",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Rebuild its branch from the current base (the old one is kept as "
    "kanban/stale/... when it has commits of its own).",
)
@json_option
@pass_board
def retry(
    board: Any,
    cards: tuple[int, ...],
    statuses: tuple[str, ...],
    profile: str | None,
    goal: int | None,
    note: str | None,
    skip_backoff: bool,
    fresh: bool,
    as_json: bool,
) -> None:
    """Run failed, blocked, cancelled or reviewed cards again, with a fresh attempt budget.

    Also sends a card in `review` back to the agent and accepts a card from `triage`. A
    card's next attempt reuses its branch; a branch with no commits of its own is rebuilt from
    the current base on its own, and --fresh rebuilds any. --now also skips the backoff of a
    `ready` card waiting after a failed attempt. With filters (default states: failed,
    blocked, cancelled, review, triage), every card they match. All or nothing.

    \b
    Examples:
      kanban retry 12 --note "Keep the public API unchanged"
      kanban retry 12 --fresh          # after committing what it needed to the base branch
      kanban retry 12 --now            # ready, but backing off: start it now
      kanban retry --status failed --profile shell
    """
    from kanban import bulk

    ids = bulk.select(board, verb="retry", ids=cards, statuses=statuses, profile=profile, goal=goal)
    kept = bulk.refresh_branches(board, ids) if fresh and ids else {}
    moved = (
        bulk.apply(board, ids, verb="retry", note=note, skip_backoff=skip_backoff) if ids else []
    )
    if not as_json:
        for card_id, branch in kept.items():
            click.echo(
                f"card {card_id}: its next attempt starts from the base branch"
                + (f" (old branch kept as {branch})" if branch else "")
            )
    _report(moved, as_json)


@click.command()
@filters
@click.option("--reason", "-r", help="Why (kept on the card).")
@json_option
@pass_board
def cancel(
    board: Any,
    cards: tuple[int, ...],
    statuses: tuple[str, ...],
    profile: str | None,
    goal: int | None,
    reason: str | None,
    as_json: bool,
) -> None:
    """Cancel cards; a running agent loses its lease and is stopped by its supervisor.

    With filters (default: every open state), every card they match. All or nothing.

    \b
    Examples:
      kanban cancel 12 --reason "superseded by 14"
      kanban cancel --goal 3 --status ready --status todo
    """
    _run(board, "cancel", cards, statuses, profile, goal, as_json, reason=reason)


@click.command()
@filters
@click.option("--done", is_flag=True, help="Every done card (same as --status done).")
@json_option
@pass_board
def archive(
    board: Any,
    cards: tuple[int, ...],
    statuses: tuple[str, ...],
    profile: str | None,
    goal: int | None,
    done: bool,
    as_json: bool,
) -> None:
    """Hide finished cards from `ls` and `board` (they stay in the database;
    `kanban unarchive` brings one back).

    With filters (default: done, failed, cancelled), every card they match. All or nothing.

    \b
    Examples:
      kanban archive 12 15
      kanban archive --done
    """
    if done:
        statuses = (*statuses, "done")
    _run(board, "archive", cards, statuses, profile, goal, as_json)


COMMANDS = [unblock, retry, cancel, archive]
