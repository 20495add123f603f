"""`kanban mcp`: a Model Context Protocol server over stdio (the official `mcp` SDK).

Inside a run ($KANBAN_SOCKET set) its tools are the agent's verbs, sent to the run's
supervisor with exactly the scope of `kanban` inside a run (kanban.channel): kanban_show,
kanban_complete, kanban_block, kanban_fail, kanban_comment, kanban_add, kanban_heartbeat. A
tool asked about another card, or refused for any reason, answers with an error result.

Outside a run it opens the board like the CLI: read tools (kanban_list, kanban_show,
kanban_why) always, and write tools acting as a person (kanban_complete, kanban_block,
kanban_fail, kanban_comment, kanban_add) only when started with `--allow-writes`.

The SDK is imported here only, so other commands start no slower.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kanban import channel, errors

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

INSTRUCTIONS_IN_RUN = (
    "Tools for reporting on the kanban card this agent run is working on. Finish with "
    "kanban_complete (or kanban_block / kanban_fail); every tool acts on this run's card only."
)
INSTRUCTIONS_BOARD = (
    "Tools for a kanban board that dispatches coding agents: list cards, show one, ask why "
    "one is not running; write tools only when the server was started with --allow-writes."
)


def build(*, allow_writes: bool = False, board: Any = None) -> Any:
    """The server: the in-run tools when $KANBAN_SOCKET is set, else the board's tools
    (`board` opened lazily by the first tool call when not given)."""
    from mcp.server.mcpserver import MCPServer

    server: MCPServer[Any]
    if channel.in_run():
        server = MCPServer("kanban", instructions=INSTRUCTIONS_IN_RUN)
        _run_tools(server)
    else:
        server = MCPServer("kanban", instructions=INSTRUCTIONS_BOARD)
        opened: list[Any] = [board]

        def get() -> Any:
            if opened[0] is None:
                from kanban import api

                opened[0] = api.open_board()
            return opened[0]

        _board_tools(server, get, allow_writes=allow_writes)
    return server


def _call(fn: Callable[[], Any]) -> Any:
    from mcp.server.mcpserver.exceptions import ToolError

    try:
        return fn()
    except errors.KanbanError as exc:
        raise ToolError(exc.message) from exc


def _run_tools(server: MCPServer[Any]) -> None:
    def send(verb: str, card: int | None, **args: Any) -> Any:
        return _call(lambda: channel.request(verb, card=card, **args))

    @server.tool()
    def kanban_show(card: int | None = None) -> dict[str, Any]:
        """This run's card: title, body, parents with their summaries, comments, earlier runs."""
        result: dict[str, Any] = send("show", card)
        return result

    @server.tool()
    def kanban_complete(
        summary: str, metadata: dict[str, Any] | None = None, card: int | None = None
    ) -> dict[str, Any]:
        """Finish this card: what was done and where (the next cards' agents read it), and
        optional structured results. Commit your work first."""
        result: dict[str, Any] = send("complete", card, summary=summary, metadata=metadata)
        return result

    @server.tool()
    def kanban_block(
        reason: str, kind: str = "needs_input", card: int | None = None
    ) -> dict[str, Any]:
        """Stop and ask a person. kind: needs_input, dependency, capability, or transient
        (transient is retried later instead)."""
        result: dict[str, Any] = send("block", card, reason=reason, kind=kind)
        return result

    @server.tool()
    def kanban_fail(error: str, card: int | None = None) -> dict[str, Any]:
        """Report a failed attempt; it is retried with a backoff until attempts are spent."""
        result: dict[str, Any] = send("fail", card, error=error)
        return result

    @server.tool()
    def kanban_comment(body: str, card: int | None = None) -> dict[str, Any]:
        """Leave a note on this card for whoever works on it next."""
        result: dict[str, Any] = send("comment", card, body=body)
        return result

    @server.tool()
    def kanban_add(
        title: str, body: str | None = None, profile: str | None = None
    ) -> dict[str, Any]:
        """Add a follow-up card that runs after this one (default profile: this card's)."""
        result: dict[str, Any] = send("add", None, title=title, body=body, profile=profile)
        return result

    @server.tool()
    def kanban_heartbeat(note: str | None = None, card: int | None = None) -> dict[str, Any]:
        """Say you are still working (with a note of what on), during long steps."""
        result: dict[str, Any] = send("heartbeat", card, note=note)
        return result


def _board_tools(server: MCPServer[Any], get: Callable[[], Any], *, allow_writes: bool) -> None:
    @server.tool()
    def kanban_list(status: str | None = None, profile: str | None = None) -> list[dict[str, Any]]:
        """The board's cards (not archived), optionally of one status or profile."""
        cards = _call(lambda: get().cards(status=status, profile=profile))
        return [c.to_json() for c in cards]

    @server.tool()
    def kanban_show(card: int) -> dict[str, Any]:
        """One card with its parents, children, runs, events and comments."""
        result: dict[str, Any] = _call(lambda: get().show(card).to_json())
        return result

    @server.tool()
    def kanban_why(card: int) -> list[str]:
        """Why a card is not running (the dispatcher's own planner says)."""
        from kanban import why

        lines: list[str] = _call(lambda: why.explain(get(), card))
        return lines

    if not allow_writes:
        return

    @server.tool()
    def kanban_complete(card: int, summary: str | None = None) -> dict[str, Any]:
        """Mark a card done (or approve one in review), as a person."""
        result: dict[str, Any] = _call(lambda: get().complete(card, summary=summary).to_json())
        return result

    @server.tool()
    def kanban_block(card: int, reason: str) -> dict[str, Any]:
        """Block a card until a person unblocks it."""
        result: dict[str, Any] = _call(lambda: get().block(card, reason=reason).to_json())
        return result

    @server.tool()
    def kanban_fail(card: int, error: str) -> dict[str, Any]:
        """Give a card up as failed, as a person."""
        result: dict[str, Any] = _call(lambda: get().fail(card, error=error).to_json())
        return result

    @server.tool()
    def kanban_comment(card: int, body: str) -> dict[str, Any]:
        """Leave a note on a card (the next agent reads it)."""
        result: dict[str, Any] = _call(lambda: get().comment(card, body).to_json())
        return result

    @server.tool()
    def kanban_add(
        title: str,
        body: str | None = None,
        profile: str | None = None,
        parents: list[int] | None = None,
    ) -> dict[str, Any]:
        """Put a card on the board (after `parents`, if given)."""
        result: dict[str, Any] = _call(
            lambda: (
                get().add(title, body=body or "", profile=profile, parents=parents or []).to_json()
            )
        )
        return result


def serve(*, allow_writes: bool = False) -> None:
    build(allow_writes=allow_writes).run("stdio")
