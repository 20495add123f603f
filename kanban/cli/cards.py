"""Commands that make and read cards: init, add, ls, show, link, unlink, comment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kanban import clock, errors, termtext
from kanban.cli import render
from kanban.cli._choices import agent_choice_options
from kanban.cli._common import (
    CARD,
    DURATION,
    USD,
    State,
    emit_json,
    json_option,
    pass_board,
    pass_state,
    read_text_arg,
)


@click.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--base",
    metavar="BRANCH",
    help="The branch new cards start from and `kanban merge` merges into (default: the one "
    "checked out now); recorded in .kanban/config.toml.",
)
@json_option
@pass_state
def init(state: State, directory: Path | None, base: str | None, as_json: bool) -> None:
    """Create a board at the root of this git repository.

    Makes `.kanban/` (board database, logs, config; readable by you only) at the top of the
    repository containing DIRECTORY (default: here), brings its schema up to date, and keeps
    `.kanban/` and `worktrees/` out of `git status` through `.git/info/exclude`.
    With --db naming a PostgreSQL board (several hosts), the URL goes into
    `.kanban/config.toml` so that every command run in this clone uses it.
    The base branch (--base, default the current one) is recorded there too, so new cards
    and `kanban merge` keep to it whatever is checked out later. Running it again is
    harmless.

    \b
    Examples:
      cd ~/src/myproject && kanban init
      kanban init --base main
      kanban --db postgresql://kanban@db.internal/kanban init    # on each host
    """
    from kanban import api, gitrun, merging, settings

    start = (directory or Path.cwd()).absolute()
    if not start.is_dir():
        raise errors.UsageError(f"{start} is not a directory")
    root = settings.find_git_root(start)
    explicit_db = state.overrides.get("db")
    if root is None and not explicit_db:
        raise errors.UsageError(
            f"{start} is not inside a git repository; run `git init` first, "
            "or give --db to keep a board elsewhere"
        )
    if root is not None and not gitrun.has_commit(root):
        raise errors.UsageError(gitrun.no_commit_message(root))
    config_file = (root or start) / settings.STATE_DIR / settings.CONFIG_FILE
    branch = merging.choose_base(root, config_file, base) if root is not None else None
    overrides = dict(state.overrides)
    if not explicit_db:
        assert root is not None
        state_dir = root / settings.STATE_DIR
        state_dir.mkdir(mode=0o700, exist_ok=True)
        overrides["db"] = str(state_dir / settings.BOARD_FILE)
        _exclude_from_git(root)
    elif root is not None and "://" in explicit_db:
        # A shared board (PostgreSQL): this clone remembers it, so commands run here find it.
        state_dir = root / settings.STATE_DIR
        state_dir.mkdir(mode=0o700, exist_ok=True)
        _exclude_from_git(root)
        _remember_db(state_dir / settings.CONFIG_FILE, explicit_db)
    config = settings.load(overrides, cwd=start)
    board = api.connect(config)
    board.close()
    if branch is not None:
        merging.remember_base(config.state_dir / settings.CONFIG_FILE, branch)
    if as_json:
        emit_json({"db": config.db_url, "repo": str(root) if root else None, "base": branch})
    else:
        click.echo(f"board ready: {config.db_url.removeprefix('sqlite:///')}")
        if branch is not None:
            click.echo(f"base branch: {branch} (new cards start there; kanban merge's target)")
        click.echo("next: kanban add 'first card' --profile demo && kanban dispatch")


def _remember_db(config: Path, url: str) -> None:
    """Add `db = URL` to the clone's config unless it names a board already."""
    import json
    import os
    import tomllib

    text = config.read_text() if config.exists() else ""
    if "db" in tomllib.loads(text):
        return
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(("\n" if text and not text.endswith("\n") else "") + f"db = {json.dumps(url)}\n")


def _exclude_from_git(root: Path) -> None:
    exclude = root / ".git" / "info" / "exclude"
    if not (root / ".git").is_dir():
        return
    exclude.parent.mkdir(exist_ok=True)
    text = exclude.read_text() if exclude.exists() else ""
    missing = [line for line in ("/.kanban/", "/worktrees/") if line not in text.splitlines()]
    if missing:
        with exclude.open("a") as fh:
            if text and not text.endswith("\n"):
                fh.write("\n")
            fh.write("# kanban: board state and card worktrees\n" + "\n".join(missing) + "\n")


class TitleCommand(click.Command):
    """A command whose first argument is a title: a title that starts with `-` (read as an
    option) gets a hint about `--`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)  # the parser consumes `args`
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            words = [a for a in given if a == exc.option_name or a.startswith(exc.option_name)]
            if not words:
                raise
            raise click.UsageError(
                f"{exc.format_message().rstrip('.')}; a title that starts with '-' goes "
                f"after `--`: kanban {ctx.info_name} -- {words[0]!r}",
                ctx=ctx,
            ) from exc


@click.command(cls=TitleCommand)
@click.argument("title")
@click.option("--body", "-b", help="Details for the agent; '-' reads standard input.")
@click.option(
    "--parent",
    "-p",
    "parents",
    type=CARD,
    multiple=True,
    help="A card this one waits for (repeat for several).",
)
@click.option("--profile", "-P", help="Agent profile that works it (see `kanban profiles ls`).")
@click.option(
    "--priority",
    type=int,
    default=0,
    show_default=True,
    help="Higher runs first among ready cards.",
)
@click.option(
    "--path",
    "paths",
    multiple=True,
    help="Glob of files it will touch; overlapping cards never run at once.",
)
@click.option("--max-attempts", type=int, help="Attempts before it is blocked (default: profile).")
@click.option(
    "--timeout",
    type=DURATION,
    help="Per-run limit with its unit: 90s, 30m, 2h (default: profile). A bare number is refused.",
)
@click.option(
    "--max-cost",
    type=USD,
    help="Cost cap in USD over all its runs; reaching it stops the run (default: profile).",
)
@click.option("--key", help="Idempotency key: adding the same key again returns the first card.")
@click.option(
    "--review", is_flag=True, help="Stop in `review` for a person when the agent is done."
)
@click.option(
    "--triage", is_flag=True, help="Park it in `triage` until someone runs `kanban retry`."
)
@agent_choice_options
@click.option("--quiet", "-q", is_flag=True, help="Print only the new card's id.")
@json_option
@pass_board
def add(
    board: Any,
    title: str,
    body: str | None,
    parents: tuple[int, ...],
    profile: str | None,
    priority: int,
    paths: tuple[str, ...],
    max_attempts: int | None,
    timeout: str | None,
    max_cost: float | None,
    key: str | None,
    review: bool,
    triage: bool,
    model: str | None,
    agent_args: tuple[str, ...],
    agent_env: tuple[tuple[str, str], ...],
    quiet: bool,
    as_json: bool,
) -> None:
    """Put a card on the board.

    A card with unfinished parents is `todo` and becomes `ready` when they are all done;
    otherwise it is `ready` at once, and a running dispatcher picks it up within a second.
    The profile must be one that loads here (`kanban profiles ls`); a card without one is
    only worked by hand (`kanban claim`) until `kanban edit CARD --profile NAME` gives it one.
    A title starting with '-' goes after `--`.

    \b
    Examples:
      kanban add "Write the CSV parser" --profile claude-code --path 'src/csv/**'
      kanban add "Test the parser" --parent 12 --body - < spec.md
      id=$(kanban add -q "Nightly report" --key report-2026-11-21)
      kanban add "Refactor the cache" --profile claude-code --max-cost 2.50
      kanban add "Port the parser" --profile claude-code --model claude-sonnet-4-6 \\
          --arg --effort=high
    """
    from kanban import editing

    card = editing.add(
        board,
        title,
        body=read_text_arg(body) or "",
        profile=profile,
        parents=parents,
        priority=priority,
        paths=paths or None,
        max_attempts=max_attempts,
        timeout=timeout,
        key=key,
        review=review,
        triage=triage,
        max_cost_usd=max_cost,
        model=model,
        agent_args=agent_args,
        agent_env=dict(agent_env),
    )
    if as_json:
        emit_json(card)
    elif quiet:
        click.echo(card.id)
    else:
        title = termtext.clean(card.title)
        click.echo(f"added card {card.id} ({render.status(card.status)}): {title}")
        if card.profile is None:
            click.echo(
                f"card {card.id} has no profile, so no dispatcher runs it: "
                f"`kanban edit {card.id} --profile NAME` gives it one (see `kanban profiles ls`)",
                err=True,
            )


@click.command("ls")
@click.option(
    "--status",
    "-s",
    "statuses",
    multiple=True,
    help="Only cards in this state (repeat for several).",
)
@click.option("--profile", "-P", help="Only cards for this profile.")
@click.option("--parent", type=CARD, help="Only children of this card.")
@click.option("--search", help="Only cards whose title or body contains this text.")
@click.option("--all", "include_archived", is_flag=True, help="Include archived cards.")
@click.option("--limit", type=click.IntRange(1, None), help="At most this many.")
@json_option
@pass_board
def ls(
    board: Any,
    statuses: tuple[str, ...],
    profile: str | None,
    parent: int | None,
    search: str | None,
    include_archived: bool,
    limit: int | None,
    as_json: bool,
) -> None:
    """List cards, oldest first.

    \b
    Examples:
      kanban ls --status ready --status blocked
      kanban ls --profile codex --json | jq '.[].title'
    """
    cards = board.cards(
        list(statuses) or None,
        profile=profile,
        parent=parent,
        search=search,
        include_archived=include_archived,
        limit=limit,
    )
    if as_json:
        emit_json(cards)
    else:
        click.echo(render.cards_table(cards))


@click.command()
@click.argument("card", type=CARD)
@json_option
@pass_board
def show(board: Any, card: int, as_json: bool) -> None:
    """Everything about one card: parents, children, runs, comments and history.

    \b
    Example:
      kanban show 12 --json | jq '.runs[-1].error'
    """
    detail = board.show(card)
    if as_json:
        emit_json(detail)
    else:
        click.echo(render.detail(detail))


@click.command()
@click.argument("parent", type=CARD)
@click.argument("child", type=CARD)
@json_option
@pass_board
def link(board: Any, parent: int, child: int, as_json: bool) -> None:
    """Make CHILD wait until PARENT is done.

    A link that would close a cycle is refused, naming the cycle. A ready CHILD goes back
    to `todo` while PARENT is unfinished.

    \b
    Example:
      kanban link 12 15      # 15 starts after 12 is done
    """
    created = board.link(parent, child)
    if as_json:
        emit_json({"parent": parent, "child": child, "created": created})
        return
    click.echo(
        f"card {child} now waits for card {parent}"
        if created
        else f"card {child} already waits for card {parent}"
    )


@click.command()
@click.argument("parent", type=CARD)
@click.argument("child", type=CARD)
@json_option
@pass_board
def unlink(board: Any, parent: int, child: int, as_json: bool) -> None:
    """Remove the dependency of CHILD on PARENT (CHILD becomes ready if nothing else holds it).

    \b
    Example:
      kanban unlink 12 15
    """
    board.unlink(parent, child)
    if as_json:
        emit_json({"parent": parent, "child": child, "removed": True})
    else:
        click.echo(f"card {child} no longer waits for card {parent}")


@click.command()
@click.argument("card", type=CARD)
@click.argument("text")
@json_option
@pass_board
def comment(board: Any, card: int, text: str, as_json: bool) -> None:
    """Add a note to a card; the next agent to work it sees every comment.

    TEXT '-' reads standard input.

    \b
    Example:
      kanban comment 12 "The parser must accept semicolons too"
    """
    made = board.comment(card, read_text_arg(text) or "")
    if as_json:
        emit_json(made)
    else:
        click.echo(f"commented on card {card} at {clock.iso(made.at)}")


COMMANDS = [init, add, ls, show, link, unlink, comment]  # board, graph: cli/overview.py
