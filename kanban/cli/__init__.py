"""The `kanban` command line: thin commands over `kanban.api`, grouped by noun.

Each command opens the board, calls one library function and renders the result; domain
errors become one line on stderr and a non-zero exit (see `_common.Group`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

import click

from kanban.__about__ import __version__
from kanban.cli import (
    bulk,
    cards,
    costs,
    cron,
    dbcmd,
    dispatch,
    editing,
    events,
    goals,
    notify,
    ops,
    overview,
    profiles,
    runs,
    serve,
)
from kanban.cli._common import Group, State


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    envvar="KANBAN_DB",
    metavar="PATH_OR_URL",
    help="The board: a SQLite file or a SQLAlchemy URL (default: .kanban/board.db "
    "found by walking up from here). Env: KANBAN_DB.",
)
@click.version_option(__version__, prog_name="kanban")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """A Kanban board that dispatches coding agents into git worktrees.

    Put cards on the board, link them into a graph, and let `kanban dispatch` run each one
    with the right agent in its own worktree. See `kanban COMMAND --help` and docs/.

    \b
    Example:
      kanban init && kanban add "Write the parser" --profile demo && kanban dispatch --once
    """
    ctx.obj = State(overrides={"db": db})


for _module in (cards, overview, editing, runs, bulk, costs, dispatch, ops, events, serve):
    for _command in _module.COMMANDS:
        cli.add_command(_command)
cli.add_command(goals.goal_group, name="goal")
cli.add_command(cron.cron_group, name="cron")
cli.add_command(notify.notify_group, name="notify")
cli.add_command(profiles.profiles_group, name="profiles")
cli.add_command(dbcmd.db_group, name="db")


def main(argv: list[str] | None = None) -> Any:
    """The `kanban` command. Once a command is done and its output flushed, the process
    ends without the interpreter's teardown (collecting every module SQLAlchemy loaded costs
    tens of milliseconds a command), unless a thread of its own is still running."""
    try:
        cli.main(args=argv, prog_name="kanban")
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    _exit(code)


def _exit(code: object) -> None:
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
        code = 1
    status = code if isinstance(code, int) else (0 if code is None else 1)
    if threading.active_count() > 1:
        sys.exit(status)  # someone else's thread may still have work to finish
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: the output did not all get out
        status = status or 1
    os._exit(status)
