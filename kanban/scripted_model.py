"""A scripted model service: the fake at the expensive edge of a real agent.

The real agent CLIs (Claude Code, Codex, Aider, Hermes) are pointed at this server on
127.0.0.1 the way a user points them at a local model server. It speaks the three wire
protocols they use:

- Anthropic Messages (`POST /v1/messages`, streamed as SSE or not) — Claude Code;
- OpenAI Responses (`POST /v1/responses`, streamed) — Codex CLI;
- OpenAI Chat Completions (`POST /v1/chat/completions`, streamed or not) — Aider, Hermes.

A test gives it a script: a list of steps, one per model turn of the agent's main
conversation. Which step answers a request is read from the request itself (how many tool
results the conversation already holds), so side calls an agent makes (a title, a commit
message, a probe) neither consume nor disturb the script. Every request is recorded, so a
test can assert what the agent sent (for example that a resumed session carried the earlier
conversation).

    with ScriptedModel([Shell("echo hi > hi.txt"), Say("done", usage=Usage(120, 30))]) as m:
        env = {"ANTHROPIC_BASE_URL": m.url, ...}
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "Edit",
    "Recorded",
    "Say",
    "ScriptedModel",
    "Shell",
    "Step",
    "Tool",
    "Usage",
    "point_agent",
    "tool_names_in",
]


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


_SHELL_TOOLS = ("Bash", "exec_command", "shell", "terminal", "local_shell")
_WRITE_TOOLS = ("Write", "write_file")


class ScriptedModel:
    """An HTTP server on 127.0.0.1 playing `script`; a context manager."""

    def __init__(self, script: Sequence[Step], *, model: str = "scripted-model") -> None:
        if not script or not isinstance(script[-1], Say):
            raise ValueError("a script ends with Say(...): the agent's final message")
        self.script = list(script)
        self.model = model
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.said: set[str] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The server's root, as ANTHROPIC_BASE_URL takes it (no /v1)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        """The OpenAI-style base URL (with /v1)."""
        return f"{self.url}/v1"

    def __enter__(self) -> ScriptedModel:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ what tests read

    def calls(self, path_suffix: str = "") -> list[Recorded]:
        """The POSTs whose path ends with `path_suffix` (all model calls by default)."""
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path.endswith(path_suffix)]

    def scripted(self) -> list[Recorded]:
        """The requests that were answered from the script (the agent's main conversation)."""
        with self._lock:
            return [r for r in self.requests if r.step is not None]

    def tool_results(self) -> list[str]:
        """What the agent's tools answered, as the last scripted request carried them (for a
        test's failure message: why did `kanban complete` not take?)."""
        scripted = self.scripted()
        if not scripted or scripted[-1].body is None:
            return []
        body = scripted[-1].body
        found: list[str] = []
        for message in body.get("messages") or []:
            content = message.get("content")
            if message.get("role") == "tool":
                found.append(str(content))
            elif isinstance(content, list):
                found += [str(b.get("content")) for b in content if b.get("type") == "tool_result"]
        raw = body.get("input")
        for item in raw if isinstance(raw, list) else []:
            if isinstance(item, dict) and str(item.get("type", "")).endswith("_output"):
                found.append(str(item.get("output")))
        return found

    def usage_total(self) -> Usage:
        """What the script reported in all, for the steps it played."""
        played = {r.step for r in self.scripted() if r.step is not None}
        steps = [self.script[i] for i in sorted(played)]
        return Usage(
            sum(s.usage.input_tokens for s in steps), sum(s.usage.output_tokens for s in steps)
        )

    # ------------------------------------------------------------------ plumbing

    def record(self, item: Recorded) -> None:
        with self._lock:
            self.requests.append(item)

    def remember(self, content: str) -> None:
        with self._lock:
            self.said.add(content)

    def next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"

    def step_at(self, index: int) -> Step:
        return self.script[min(index, len(self.script) - 1)]


def _handler(model: ScriptedModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return  # tests read model.requests, not stderr

        def do_HEAD(self) -> None:
            model.record(Recorded("HEAD", self.path, dict(self.headers), None, None))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            model.record(Recorded("GET", self.path, dict(self.headers), None, None))
            if self.path.rstrip("/").endswith("/models"):
                listing = {
                    "object": "list",
                    "data": [{"id": model.model, "object": "model", "owned_by": "tests"}],
                }
                self._json(200, listing)
            else:
                self._json(200, {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                self._json(400, {"error": {"message": "not JSON"}})
                return
            path = self.path.split("?", 1)[0]
            if path.endswith("/messages/count_tokens"):
                model.record(Recorded("POST", self.path, dict(self.headers), body, None))
                self._json(200, {"input_tokens": 100})
            elif path.endswith("/messages"):
                _anthropic(self, model, body)
            elif path.endswith("/responses"):
                _responses(self, model, body)
            elif path.endswith("/chat/completions"):
                _chat(self, model, body)
            else:
                model.record(Recorded("POST", self.path, dict(self.headers), body, None))
                self._json(404, {"error": {"message": f"no such endpoint: {path}"}})

        # helpers used by the protocol functions
        def _json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def sse(self, events: Iterator[tuple[str | None, Any]]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for name, data in events:
                text = data if isinstance(data, str) else json.dumps(data)
                chunk = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
                self.wfile.write(chunk.encode())
                self.wfile.flush()
            self.close_connection = True

    return Handler


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


def _anthropic(handler: Any, model: ScriptedModel, body: dict[str, Any]) -> None:
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


def _responses(handler: Any, model: ScriptedModel, body: dict[str, Any]) -> None:
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


def _chat(handler: Any, model: ScriptedModel, body: dict[str, Any]) -> None:
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


# ---------------------------------------------------------------------- pointing agents here


def point_agent(agent: str, model: ScriptedModel, home: Path) -> dict[str, str]:
    """Configure `agent` (claude, codex, hermes, aider) under `home` to use `model`, the way a
    user points it at a local model server (docs/howto/local-models.md), and return the
    environment variables it needs beside HOME. Nothing here reaches the network."""
    home.mkdir(parents=True, exist_ok=True)
    if agent == "claude":
        settings = home / ".claude" / "settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        # No telemetry, no update checks, no side calls to hosts we are not.
        settings.write_text(json.dumps({"env": {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}}))
        return {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "sk-scripted"}
    if agent == "codex":
        config = home / ".codex" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f'model = "{model.model}"\n'
            'model_provider = "local"\n'
            "check_for_update_on_startup = false\n\n"
            "[model_providers.local]\n"
            'name = "local"\n'
            f'base_url = "{model.v1}"\n'
            'env_key = "OPENAI_API_KEY"\n'
            'wire_api = "responses"\n\n'
            "[analytics]\nenabled = false\n\n"
            '[otel]\nexporter = "none"\ntrace_exporter = "none"\n\n'
            "[features]\nplugins = false\n"
        )
        return {"OPENAI_API_KEY": "sk-scripted"}
    if agent == "hermes":
        config = home / ".hermes" / "config.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            "model:\n"
            "  provider: custom\n"
            f"  default: {model.model}\n"
            f"  base_url: {model.v1}\n"
            "  api_key: sk-scripted\n"
            "  context_length: 128000\n"
            "security:\n"
            "  tirith_enabled: false\n"
        )
        return {}
    if agent == "aider":
        # Prices for the scripted model, so Aider prints a cost line as it does for a known one.
        prices = {
            f"openai/{model.model}": {
                "max_input_tokens": 128000,
                "max_output_tokens": 8192,
                "input_cost_per_token": 3e-06,
                "output_cost_per_token": 1.5e-05,
                "litellm_provider": "openai",
                "mode": "chat",
            }
        }
        (home / ".aider.model.metadata.json").write_text(json.dumps(prices))
        return {
            "AIDER_MODEL": f"openai/{model.model}",
            "AIDER_OPENAI_API_BASE": model.v1,
            "OPENAI_API_KEY": "sk-scripted",
            "AIDER_ANALYTICS_DISABLE": "true",
            "AIDER_GITIGNORE": "false",
            "AIDER_EDIT_FORMAT": "whole",
            "AIDER_SHOW_MODEL_WARNINGS": "false",
        }
    raise ValueError(f"unknown agent {agent!r}: claude, codex, hermes or aider")
