"""The wire formats of a ScriptedModel (kanban.scripted_model): which tool call a step
becomes for the tools the agent offered, and each agent API's answer to one request:
Anthropic Messages, OpenAI Responses and Chat Completions, streamed (SSE) or not. Which step
answers is read from the request itself (how many turns the conversation already holds);
side calls are answered without consuming the script."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Protocol

from kanban.scripted_steps import Edit, Recorded, Say, Shell, Step, Tool, Usage

_SHELL_TOOLS = ("Bash", "exec_command", "shell", "terminal", "local_shell")
_WRITE_TOOLS = ("Write", "write_file")


class Served(Protocol):
    """What the encoders need of the service answering: kanban.scripted_model.ScriptedModel."""

    model: str
    said: set[str]

    def record(self, item: Recorded) -> None: ...
    def remember(self, content: str) -> None: ...
    def next_id(self, prefix: str) -> str: ...
    def step_at(self, index: int) -> Step: ...


# ---------------------------------------------------------------------- tool choice


def tool_names_in(body: dict[str, Any]) -> list[str]:
    """The names of the tools a recorded request offered the model."""
    return sorted(_tool_names(body.get("tools")))


def _tool_names(tools: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    named: dict[str, dict[str, Any]] = {}
    for tool in tools or []:
        if tool.get("type") == "namespace":  # Codex's MCP servers: one namespace of tools
            for inner in tool.get("tools") or []:
                if inner.get("name"):
                    named[f"{tool.get('name')}__{inner['name']}"] = {
                        **inner,
                        "namespace": tool.get("name"),
                    }
            continue
        name = tool.get("name") or (tool.get("function") or {}).get("name")
        if name:
            named[str(name)] = tool
    return named


def _schema(tool: dict[str, Any]) -> dict[str, Any]:
    schema = (
        tool.get("input_schema")
        or tool.get("parameters")
        or (tool.get("function") or {}).get("parameters")
        or {}
    )
    return dict(schema.get("properties") or {})


def _shell_call(tools: dict[str, dict[str, Any]], command: str) -> tuple[str, dict[str, Any]]:
    """The agent's own shell tool and its arguments for `command`."""
    for name in _SHELL_TOOLS:
        if name in tools:
            props = _schema(tools[name])
            if "cmd" in props:
                return name, {"cmd": command}
            if (props.get("command") or {}).get("type") == "array":
                return name, {"command": ["bash", "-lc", command]}
            args: dict[str, Any] = {"command": command}
            if "description" in props:
                args["description"] = "scripted step"
            return name, args
    raise LookupError(f"the agent offered no shell tool (it offered {sorted(tools)})")


def _write_call(
    tools: dict[str, dict[str, Any]], path: str, content: str
) -> tuple[str, dict[str, Any]]:
    for name in _WRITE_TOOLS:
        if name in tools:
            props = _schema(tools[name])
            key = "file_path" if "file_path" in props else "path"
            return name, {key: path, "content": content}
    # No write tool: write it through the shell, without a shell quoting problem.
    quoted = content.replace("'", "'\"'\"'")
    return _shell_call(tools, f"printf '%s' '{quoted}' > '{path}'")


_REPORT_COMMAND = re.compile(r"exact command[^`]*`([^`]+)`")


def kanban_command_in(body: dict[str, Any]) -> str:
    """The absolute `kanban` command the agent's prompt told it to report with."""
    found = _REPORT_COMMAND.search(json.dumps(body))
    if found is None:
        raise LookupError("the prompt names no kanban command to report with")
    return str(json.loads(f'"{found.group(1)}"'))  # undo JSON escaping


def _call_for(
    step: Step, tools: dict[str, dict[str, Any]], body: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    if isinstance(step, Shell):
        command = step.command
        if "{kanban}" in command:  # like a model, use the command the prompt gave
            command = command.replace("{kanban}", kanban_command_in(body))
        return _shell_call(tools, command)
    if isinstance(step, Tool):
        for name in tools:
            if name == step.name or name.endswith(f"__{step.name}"):
                return name, dict(step.arguments)
        raise LookupError(f"the agent offered no tool {step.name!r} (it offered {sorted(tools)})")
    assert isinstance(step, Edit)
    return _write_call(tools, step.path, step.content)


# ---------------------------------------------------------------------- Anthropic Messages


def _anthropic_turns(messages: list[dict[str, Any]]) -> int:
    """How many model turns the conversation already holds: the script's position. A
    resumed session carries the turns of its earlier run, so its script goes on from there."""
    return sum(1 for message in messages if message.get("role") == "assistant")


def anthropic(handler: Any, model: Served, body: dict[str, Any]) -> None:
    tools = _tool_names(body.get("tools"))
    main = any(name in tools for name in _SHELL_TOOLS)
    index = _anthropic_turns(body.get("messages") or []) if main else None
    model.record(Recorded("POST", handler.path, dict(handler.headers), body, index))
    step: Step = model.step_at(index) if index is not None else Say("ok", usage=Usage(10, 2))
    message_id = model.next_id("msg")
    usage = {"input_tokens": step.usage.input_tokens, "output_tokens": step.usage.output_tokens}
    if isinstance(step, Say):
        block: dict[str, Any] = {"type": "text", "text": step.text}
        stop = "end_turn"
    else:
        name, args = _call_for(step, tools, body)
        block = {"type": "tool_use", "id": model.next_id("toolu"), "name": name, "input": args}
        stop = "tool_use"
    message = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": body.get("model") or model.model,
        "content": [block],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }
    if not body.get("stream"):
        handler._json(200, message)
        return

    def events() -> Iterator[tuple[str | None, Any]]:
        start = {**message, "content": [], "stop_reason": None}
        start["usage"] = {"input_tokens": usage["input_tokens"], "output_tokens": 1}
        yield "message_start", {"type": "message_start", "message": start}
        if block["type"] == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            delta: dict[str, Any] = {"type": "text_delta", "text": block["text"]}
        else:
            opening = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        yield (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": opening},
        )
        yield "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": 0}
        yield (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
        yield "message_stop", {"type": "message_stop"}

    handler.sse(events())


# ---------------------------------------------------------------------- OpenAI Responses


def _responses_turns(items: list[dict[str, Any]]) -> int:
    calls = ("function_call", "custom_tool_call", "local_shell_call")
    return sum(
        1
        for item in items
        if isinstance(item, dict)
        and (
            item.get("type") in calls
            or (item.get("type") == "message" and item.get("role") == "assistant")
        )
    )


def responses(handler: Any, model: Served, body: dict[str, Any]) -> None:
    tools = _tool_names(body.get("tools"))
    main = any(name in tools for name in _SHELL_TOOLS)
    raw = body.get("input")
    items: list[dict[str, Any]] = raw if isinstance(raw, list) else []
    index = _responses_turns(items) if main else None
    model.record(Recorded("POST", handler.path, dict(handler.headers), body, index))
    step: Step = model.step_at(index) if index is not None else Say("ok", usage=Usage(10, 2))
    response_id = model.next_id("resp")
    if isinstance(step, Say):
        item: dict[str, Any] = {
            "type": "message",
            "id": model.next_id("msg"),
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": step.text, "annotations": []}],
        }
    else:
        name, args = _call_for(step, tools, body)
        item = {
            "type": "function_call",
            "id": model.next_id("fc"),
            "call_id": model.next_id("call"),
            "name": name,
            "arguments": json.dumps(args),
            "status": "completed",
        }
        if namespace := tools.get(name, {}).get("namespace"):
            # A tool of a namespace is called by its own name, with the namespace beside it.
            item["name"], item["namespace"] = tools[name]["name"], namespace
    usage = {
        "input_tokens": step.usage.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": step.usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": step.usage.input_tokens + step.usage.output_tokens,
    }
    base = {"id": response_id, "object": "response", "model": body.get("model") or model.model}

    def events() -> Iterator[tuple[str | None, Any]]:
        yield (
            "response.created",
            {"type": "response.created", "response": {**base, "status": "in_progress"}},
        )
        yield (
            "response.output_item.added",
            {"type": "response.output_item.added", "output_index": 0, "item": item},
        )
        if item["type"] == "message":
            yield (
                "response.output_text.delta",
                {
                    "type": "response.output_text.delta",
                    "item_id": item["id"],
                    "output_index": 0,
                    "content_index": 0,
                    "delta": item["content"][0]["text"],
                },
            )
        yield (
            "response.output_item.done",
            {"type": "response.output_item.done", "output_index": 0, "item": item},
        )
        done = {**base, "status": "completed", "output": [item], "usage": usage}
        yield "response.completed", {"type": "response.completed", "response": done}

    handler.sse(events())


# ---------------------------------------------------------------------- Chat Completions


def _chat_turns(messages: list[dict[str, Any]], said: set[str]) -> int:
    """Each reply this service gave that the conversation holds is one turn (Aider's system
    prompt carries example replies of its own, which do not count)."""
    return sum(
        1
        for m in messages
        if m.get("role") == "assistant" and (m.get("tool_calls") or m.get("content") in said)
    )


def _aider_side_call(messages: list[dict[str, Any]]) -> bool:
    """Aider's weak-model calls (commit messages, summaries) are not part of the script."""
    system = " ".join(str(m.get("content")) for m in messages if m.get("role") == "system").lower()
    return "commit message" in system or "summarize" in system


def chat(handler: Any, model: Served, body: dict[str, Any]) -> None:
    tools = _tool_names(body.get("tools"))
    messages = body.get("messages") or []
    main = bool(tools) and any(n in tools for n in _SHELL_TOOLS)
    if not tools and not _aider_side_call(messages):
        main = True  # Aider: no tools, edits come back as text blocks
    index = _chat_turns(messages, model.said) if main else None
    model.record(Recorded("POST", handler.path, dict(handler.headers), body, index))
    step: Step = model.step_at(index) if index is not None else Say("Update files", Usage(10, 2))
    content: str | None = None
    tool_calls: list[dict[str, Any]] = []
    if isinstance(step, Say):
        content = step.text
    elif not tools:  # Aider's `whole` edit format: the path, then the whole file fenced
        if isinstance(step, Edit):
            content = f"{step.path}\n```\n{step.content}\n```\n"
        elif isinstance(step, Shell):
            content = f"Run this:\n```bash\n{step.command}\n```\n"  # Aider will not
        else:
            raise LookupError(f"an agent without tools cannot call {step.name!r}")
    else:
        name, args = _call_for(step, tools, body)
        tool_calls = [
            {
                "index": 0,
                "id": model.next_id("call"),
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
        ]
    finish = "tool_calls" if tool_calls else "stop"
    if content and index is not None:
        model.remember(content)
    usage = {
        "prompt_tokens": step.usage.input_tokens,
        "completion_tokens": step.usage.output_tokens,
        "total_tokens": step.usage.input_tokens + step.usage.output_tokens,
    }
    chat_id = model.next_id("chatcmpl")
    name_of_model = body.get("model") or model.model
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in tool_calls]
    if not body.get("stream"):
        handler._json(
            200,
            {
                "id": chat_id,
                "object": "chat.completion",
                "created": 0,
                "model": name_of_model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            },
        )
        return

    def chunk(delta: dict[str, Any], reason: str | None, **extra: Any) -> dict[str, Any]:
        return {
            "id": chat_id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": name_of_model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
            **extra,
        }

    def events() -> Iterator[tuple[str | None, Any]]:
        yield None, chunk({"role": "assistant", "content": ""}, None)
        if content:
            yield None, chunk({"content": content}, None)
        if tool_calls:
            yield None, chunk({"tool_calls": tool_calls}, None)
        yield None, chunk({}, finish)
        yield None, {**chunk({}, None), "choices": [], "usage": usage}
        yield None, "[DONE]"

    handler.sse(events())
