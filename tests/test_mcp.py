"""`kanban mcp` driven by the MCP SDK's own client over stdio: a real `kanban mcp` process, a
real board, and (inside a run) a real agent socket served as a supervisor serves it."""

from __future__ import annotations

import gc
import json
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from kanban import agentverbs, channel, supervisor
from kanban.testing import board_in

READ_TOOLS = ["kanban_list", "kanban_show", "kanban_why"]
WRITE_TOOLS = ["kanban_add", "kanban_block", "kanban_comment", "kanban_complete", "kanban_fail"]
RUN_TOOLS = sorted([*WRITE_TOOLS, "kanban_heartbeat", "kanban_show"])


def session(command: str, args: list[str], env: dict[str, str], cwd: Path, calls: Any) -> Any:
    """Start the server, initialize, list its tools, make `calls` (name, arguments) in order."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    async def main() -> Any:
        params = StdioServerParameters(command=command, args=args, env=env, cwd=cwd)
        with open(os.devnull, "w") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as client,
            ):
                await client.initialize()
                tools = sorted(t.name for t in (await client.list_tools()).tools)
                results = [await client.call_tool(name, arguments) for name, arguments in calls]
                return tools, results

    try:
        return anyio.run(main)
    finally:
        # The SDK's transport may leave its Popen for the collector after the server is gone;
        # collect it here, where its "still running" ResourceWarning is known noise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def _person_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("KANBAN_SOCKET", "KANBAN_DB")}


def test_outside_a_run_it_offers_read_tools_only(repo: Path) -> None:
    with board_in(repo) as b:
        card = b.add("look at me", profile="demo")
    tools, (listed, shown, missing, refused) = session(
        sys.executable,
        ["-m", "kanban", "mcp"],
        _person_env(),
        repo,
        [
            ("kanban_list", {}),
            ("kanban_show", {"card": card.id}),
            ("kanban_show", {"card": 999}),
            ("kanban_complete", {"card": card.id}),
        ],
    )
    assert tools == READ_TOOLS
    assert [c["title"] for c in listed.structured_content["result"]] == ["look at me"]
    assert shown.structured_content["card"]["id"] == card.id
    assert missing.is_error and "999" in _text(missing)
    assert refused.is_error, "no write tool without --allow-writes"
    with board_in(repo) as b:
        assert b.get(card.id).status == "ready"


def test_allow_writes_adds_the_write_tools_acting_as_a_person(repo: Path) -> None:
    with board_in(repo) as b:
        card = b.add("write to me", profile="demo")
    tools, (commented, added) = session(
        sys.executable,
        ["-m", "kanban", "mcp", "--allow-writes"],
        _person_env(),
        repo,
        [
            ("kanban_comment", {"card": card.id, "body": "from an interactive session"}),
            ("kanban_add", {"title": "a follow-up", "parents": [card.id]}),
        ],
    )
    assert tools == sorted([*READ_TOOLS, *WRITE_TOOLS])
    assert not commented.is_error and not added.is_error
    with board_in(repo) as b:
        assert [c.body for c in b.show(card.id).comments] == ["from an interactive session"]
        assert [c.title for c in b.cards(parent=card.id)] == ["a follow-up"]


@pytest.fixture
def run_socket(repo: Path, tmp_path: Path) -> Iterator[tuple[Any, int, int, Path]]:
    with board_in(repo) as b:
        card = b.add("the run's card", profile="demo")
        other = b.add("another card", profile="demo")
        won = b.claim(card_id=card.id)
        assert won is not None
        verbs = agentverbs.RunVerbs(b, card.id, won.run_id, won.token)
        run_dir = tmp_path / "run"
        run_dir.mkdir(mode=0o700)
        server = channel.Server(
            run_dir / channel.SOCKET_NAME,
            card_id=card.id,
            handle=verbs,
            note=lambda text: None,
            is_agent=supervisor._is_descendant,
        )
        server.start()
        try:
            yield b, card.id, other.id, run_dir
        finally:
            server.close()


def test_inside_a_run_the_tools_are_the_runs_verbs_on_its_card_only(
    run_socket: tuple[Any, int, int, Path], repo: Path
) -> None:
    """Started the way the shipped Claude Code profile registers it: from the run's
    {mcp_config} file (command, args, env)."""
    b, card, other, run_dir = run_socket
    config = supervisor.write_mcp_config(run_dir, socket=run_dir / "agent.sock", card_id=card)
    spec = json.loads(config.read_text())["mcpServers"]["kanban"]
    env = {**_person_env(), **spec["env"]}
    tools, (mine, theirs, note, done) = session(
        spec["command"],
        spec["args"],
        env,
        repo,
        [
            ("kanban_show", {}),
            ("kanban_complete", {"summary": "not mine", "card": other}),
            ("kanban_heartbeat", {"note": "halfway"}),
            ("kanban_complete", {"summary": "done through MCP", "metadata": {"files": 2}}),
        ],
    )
    assert tools == RUN_TOOLS
    assert mine.structured_content["card"]["id"] == card
    assert theirs.is_error and "not this run's card" in _text(theirs)
    assert not note.is_error and not done.is_error
    assert b.get(other).status == "ready"
    finished = b.show(card)
    assert finished.card.status == "done" and finished.card.summary == "done through MCP"
    assert any(e.kind == "agent_metadata" for e in finished.events)
