"""The script a ScriptedModel (kanban.scripted_model) plays: one step per model turn of the
agent's main conversation (Shell, Edit, Tool, and Say to end it, each with its Usage), and
the record of each request the service answered (Recorded). Plain values: nothing here
speaks HTTP or any agent's wire format (kanban.scripted_wire does)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Usage:
    input_tokens: int = 100
    output_tokens: int = 20


@dataclasses.dataclass(frozen=True)
class Shell:
    """A turn that calls the agent's shell tool with `command`."""

    command: str
    usage: Usage = Usage()


@dataclasses.dataclass(frozen=True)
class Edit:
    """A turn that writes `content` to `path`: a write tool where the agent has one, an edit
    block in Aider's `whole` format otherwise."""

    path: str
    content: str
    usage: Usage = Usage()


@dataclasses.dataclass(frozen=True)
class Say:
    """The final turn: a plain assistant message, and the conversation ends."""

    text: str
    usage: Usage = Usage()


@dataclasses.dataclass(frozen=True)
class Tool:
    """A turn that calls the tool whose name is `name` or ends with it (an MCP server's tools
    reach Claude Code as `mcp__SERVER__NAME`), with `arguments`."""

    name: str
    arguments: dict[str, Any] = dataclasses.field(default_factory=dict)
    usage: Usage = Usage()


Step = Shell | Edit | Tool | Say


@dataclasses.dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    step: int | None  # the script step that answered, None for a side call
