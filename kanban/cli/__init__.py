"""The `kanban` command line: thin commands over `kanban.api`, grouped by noun.

Each command opens the board, calls one library function and renders the result; domain
errors become one line on stderr and a non-zero exit (see `_common.Group`).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from typing import Any

import click

from kanban.__about__ import __version__
from kanban.cli._common import Group, State

# Every command: name -> (module under kanban.cli, attribute), in the order help lists them
# (by topic). A command's module is imported only when that command runs (or help lists
# it): `kanban status` never loads the goal, cron, dispatch or web commands and what they
# import. tests/test_cli_startup.py checks this table against the modules' COMMANDS.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("cards", "init"),
    "add": ("cards", "add"),
    "ls": ("cards", "ls"),
    "show": ("cards", "show"),
    "link": ("cards", "link"),
    "unlink": ("cards", "unlink"),
    "comment": ("cards", "comment"),
    "board": ("overview", "board_cmd"),
    "graph": ("overview", "graph"),
    "edit": ("editing", "edit"),
    "unarchive": ("editing", "unarchive"),
    "claim": ("runs", "claim"),
    "heartbeat": ("runs", "heartbeat"),
    "complete": ("runs", "complete"),
    "block": ("runs", "block"),
    "fail": ("runs", "fail"),
    "unblock": ("bulk", "unblock"),
    "retry": ("bulk", "retry"),
    "cancel": ("bulk", "cancel"),
    "archive": ("bulk", "archive"),
    "cap": ("costs", "cap"),
    "dispatch": ("dispatch", "dispatch"),
    "demo": ("dispatch", "demo"),
    "health": ("dispatch", "health"),
    "status": ("ops", "status"),
    "why": ("ops", "why"),
    "runs": ("ops", "runs"),
    "logs": ("ops", "logs"),
    "context": ("ops", "context"),
    "gc": ("ops", "gc"),
    "merge": ("ops", "merge"),
    "events": ("events", "events"),
    "serve": ("serve", "serve"),
    "mcp": ("mcpcmd", "mcp"),
    "goal": ("goals", "goal_group"),
    "cron": ("cron", "cron_group"),
    "notify": ("notify", "notify_group"),
    "profiles": ("profiles", "profiles_group"),
    "db": ("dbcmd", "db_group"),
}


class LazyGroup(Group):
    """The top-level group: commands from `COMMANDS`, each module imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *(name for name in self.commands if name not in COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attribute = COMMANDS[cmd_name]
            command = getattr(importlib.import_module(f"kanban.cli.{module}"), attribute)
            self.add_command(command, name=cmd_name)
        return self.commands.get(cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def main(argv: list[str] | None = None) -> Any:
    """The `kanban` command. Once a command is done and its output flushed, the process
    ends without the interpreter's teardown (collecting every module SQLAlchemy loaded costs
    tens of milliseconds a command), unless a thread of its own is still running."""
    if os.environ.get("KANBAN_SOCKET"):  # inside a run: the agent's verbs, via its supervisor
        from kanban.cli import agent

        cli_main: Any = agent.agent_cli
    else:
        cli_main = cli
    try:
        cli_main.main(args=argv, prog_name="kanban")
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
