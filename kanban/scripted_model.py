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
conversation). This module is the server and `point_agent`; the steps are in
kanban.scripted_steps and each API's wire format in kanban.scripted_wire (both re-exported
where tests use them).

    with ScriptedModel([Shell("echo hi > hi.txt"), Say("done", usage=Usage(120, 30))]) as m:
        env = {"ANTHROPIC_BASE_URL": m.url, ...}
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kanban import scripted_wire
from kanban.scripted_steps import Edit, Recorded, Say, Shell, Step, Tool, Usage
from kanban.scripted_wire import kanban_command_in, tool_names_in

__all__ = [
    "Edit",
    "Recorded",
    "Say",
    "ScriptedModel",
    "Shell",
    "Step",
    "Tool",
    "Usage",
    "kanban_command_in",
    "point_agent",
    "tool_names_in",
]


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
                scripted_wire.anthropic(self, model, body)
            elif path.endswith("/responses"):
                scripted_wire.responses(self, model, body)
            elif path.endswith("/chat/completions"):
                scripted_wire.chat(self, model, body)
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
