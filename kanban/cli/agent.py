"""`kanban` inside a run ($KANBAN_SOCKET set): the agent's verbs, sent to its supervisor.

Only show, complete, block, fail, comment, add and heartbeat exist here, all on the run's
own card; any other command is refused with a message. A person's shell (no KANBAN_SOCKET)
gets the whole CLI.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click

from kanban import channel, errors, termtext
from kanban.cli import mcpcmd
from kanban.cli._common import KanbanError, emit_json, json_option, read_text_arg

card_arg = click.argument("card", type=int, required=False)


class AgentGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.KanbanError as exc:
            raise KanbanError(exc) from exc

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and name not in self.commands and not name.startswith("-"):
            # Refused before the agent's arguments are parsed: nothing of it runs.
            raise KanbanError(
                channel.Refused(
                    f"`kanban {name}` is not available inside a run (card "
                    f"{os.environ.get('KANBAN_CARD_ID', '?')}): an agent reaches the board "
                    f"only through its supervisor, with {', '.join(channel.VERBS)} on its own "
                    "card (see docs/security.md)"
                )
            )
        return super().resolve_command(ctx, args)


@click.group(cls=AgentGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", hidden=True, help="Refused inside a run.")
def agent_cli(db: str | None) -> None:
    """Report on this run's card through its supervisor (inside a run only).

    \b
    Example:
      kanban complete --summary "Parser written; tests in tests/test_parse.py"
    """
    if db:
        raise KanbanError(channel.Refused("--db is refused inside a run: there is no board here"))


def _send(verb: str, card: int | None, as_json: bool, **args: Any) -> Any:
    result = channel.request(verb, card=card, **args)
    if as_json:
        emit_json(result)
    return result


def _said(card: dict[str, Any]) -> None:
    extra = f" ({card['reason']})" if card.get("reason") else ""
    click.echo(termtext.clean(f"card {card['id']} is {card['status']}{extra}"))


@agent_cli.command()
@card_arg
@json_option
def show(card: int | None, as_json: bool) -> None:
    """This card with its parents' summaries and the comments."""
    detail = _send("show", card, as_json)
    if as_json:
        return
    own = detail["card"]
    lines = [f"card {own['id']} [{own['status']}] {own['title']}", own.get("body") or ""]
    for parent in detail.get("parents", []):
        lines.append(f"parent {parent['id']} [{parent['status']}] {parent['title']}")
        if parent.get("summary"):
            lines.append(f"  {parent['summary']}")
    for note in detail.get("comments", []):
        lines.append(f"comment by {note.get('author') or 'someone'}: {note['body']}")
    click.echo(termtext.clean("\n".join(line for line in lines if line)))


@agent_cli.command()
@card_arg
@click.option("--summary", "-m", help="What was done: the next cards' agents read it.")
@click.option("--metadata", help="A JSON object of structured results, e.g. '{\"tests\": 12}'.")
@json_option
def complete(card: int | None, summary: str | None, metadata: str | None, as_json: bool) -> None:
    """Finish this card's run."""
    data = None
    if metadata is not None:
        try:
            data = json.loads(metadata)
        except ValueError:
            raise click.UsageError("--metadata must be a JSON object") from None
    result = _send("complete", card, as_json, summary=read_text_arg(summary), metadata=data)
    if not as_json:
        _said(result)


@agent_cli.command()
@card_arg
@click.option("--reason", "-r", required=True, help="What a person must decide or do.")
@click.option("--kind", type=click.Choice(channel.BLOCK_KINDS), default="needs_input")
@json_option
def block(card: int | None, reason: str, kind: str, as_json: bool) -> None:
    """Stop this card until a person looks at it (transient: retried later)."""
    result = _send("block", card, as_json, reason=reason, kind=kind)
    if not as_json:
        _said(result)


@agent_cli.command()
@card_arg
@click.option("--error", "-e", required=True, help="What went wrong.")
@json_option
def fail(card: int | None, error: str, as_json: bool) -> None:
    """A failed attempt (retried with a backoff until the attempts are spent)."""
    result = _send("fail", card, as_json, error=error)
    if not as_json:
        _said(result)


@agent_cli.command()
@click.argument("words", nargs=-1, required=True)
@json_option
def comment(words: tuple[str, ...], as_json: bool) -> None:
    """A note on this card: `kanban comment BODY` (or `kanban comment CARD BODY`)."""
    card, body = _card_and_text(words)
    _send("comment", card, as_json, body=read_text_arg(body))
    if not as_json:
        click.echo("comment added")


@agent_cli.command()
@click.argument("title")
@click.option("--body", "-b", help="The new card's description.")
@click.option("--profile", "-P", help="Its agent profile (default: this card's).")
@click.option("--parent", "parents", type=int, multiple=True, help="Only this card.")
@json_option
def add(
    title: str, body: str | None, profile: str | None, parents: tuple[int, ...], as_json: bool
) -> None:
    """Add a follow-up card that runs after this one."""
    result = _send(
        "add", None, as_json, title=title, body=body, profile=profile, parents=list(parents)
    )
    if not as_json:
        click.echo(termtext.clean(f"added card {result['id']}: {result['title']}"))


@agent_cli.command()
@card_arg
@click.option("--note", "-m", help="What you are doing (kept in the run's log).")
@json_option
def heartbeat(card: int | None, note: str | None, as_json: bool) -> None:
    """Say you are still at work (the supervisor renews the lease by itself too)."""
    result = _send("heartbeat", card, as_json, note=note)
    if not as_json:
        click.echo(f"lease renewed until {result['lease_expires_at']}")


def _card_and_text(words: tuple[str, ...]) -> tuple[int | None, str]:
    if len(words) >= 2 and words[0].lstrip("#").isdigit():
        return int(words[0].lstrip("#")), " ".join(words[1:])
    return None, " ".join(words)


agent_cli.add_command(mcpcmd.mcp)


def main(argv: list[str] | None = None) -> Any:
    return agent_cli.main(args=argv, prog_name="kanban")
