"""`kanban mcp`: the board (or, inside a run, the run's card) as MCP tools over stdio."""

from __future__ import annotations

import click


@click.command()
@click.option(
    "--allow-writes",
    is_flag=True,
    help="Outside a run: also offer tools that change cards (complete, block, fail, comment, "
    "add), acting as you. Inside a run the agent's own verbs are always there.",
)
def mcp(allow_writes: bool) -> None:
    """Serve Model Context Protocol tools on standard input and output.

    Inside an agent's run the tools (kanban_show, kanban_complete, kanban_block, kanban_fail,
    kanban_comment, kanban_add, kanban_heartbeat) reach the board through the run's
    supervisor and act on the run's card only. Started by a person, it offers read tools
    (kanban_list, kanban_show, kanban_why), and write tools with --allow-writes.

    \b
    Example:
      claude mcp add kanban -- kanban mcp --allow-writes
    """
    from kanban import mcpserver

    mcpserver.serve(allow_writes=allow_writes)


COMMANDS = [mcp]
