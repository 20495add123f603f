"""Reading what an agent printed: its final message, token usage, cost, and its own error.

A profile's `output` names the reader for its agent:

    text                 any program: the last line is the summary; nothing else is known
    claude-stream-json   `claude -p … --output-format stream-json --verbose`
    codex-json           `codex exec --json …`
    aider                aider's plain output with its `Tokens: … Cost: …` lines

Readers are fed the run's log line by line as it grows (the supervisor tails it, so cost
caps act while the agent runs) and report at any moment. They are pure: no I/O, no clock.
Lines the supervisor itself writes (`[kanban] …`) never reach them.

Only the agent's own words are offered to the failure patterns (`messages()`): in
stream-json that is the final result and API errors, never the tool output quoted inside
the stream, so a test suite printing "401 Unauthorized" does not look like a login problem.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
from typing import Any, Protocol

OUTPUTS = ("text", "claude-stream-json", "codex-json", "aider")
TAIL_LINES = 200  # how much plain output is kept for summaries and failure patterns
MAX_SUMMARY = 4000


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """What a reader knows so far. None means the agent has not said (not zero)."""

    summary: str | None = None  # the agent's final message
    tokens_in: int | None = None  # every input token, cached ones included
    tokens_out: int | None = None
    cost_usd: float | None = None  # as the agent reported it
    is_error: bool = False  # the agent said its run failed (whatever its exit code)
    error: str | None = None  # the agent's own words on why
    error_kind: str | None = None  # "auth" or "rate_limit", from a structured field
    retry_at: float | None = None  # epoch seconds, when the agent says it may go on


class Reader(Protocol):
    def feed(self, line: str) -> list[str]:
        """Take one line of output; return the agent's own words in it (for live patterns)."""
        ...

    def report(self) -> Report: ...

    def messages(self) -> list[str]:
        """The agent's own lines, for the profile's failure patterns."""
        ...


def reader(kind: str) -> Reader:
    """A fresh reader for a profile's `output` (checked when the profile loads)."""
    readers: dict[str, type[Reader]] = {
        "text": TextReader,
        "claude-stream-json": ClaudeStreamReader,
        "codex-json": CodexJsonReader,
        "aider": AiderReader,
    }
    return readers[kind]()


def read(kind: str, lines: list[str]) -> Report:
    """Everything at once: the report for a whole log (tests, and `kanban` tools)."""
    r = reader(kind)
    for line in lines:
        r.feed(line)
    return r.report()


def _clip(text: str | None, limit: int = MAX_SUMMARY) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return (text[: limit - 1] + "…" if len(text) > limit else text) or None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _json(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class TextReader:
    """Plain output: the last non-empty line is the summary; the tail is the agent's word."""

    def __init__(self) -> None:
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def feed(self, line: str) -> list[str]:
        if not line.strip():
            return []
        self.tail.append(line.rstrip())
        return [line.rstrip()]

    def report(self) -> Report:
        return Report(summary=_clip(self.tail[-1]) if self.tail else None)

    def messages(self) -> list[str]:
        return list(self.tail)


_AIDER_TOKENS = re.compile(
    r"Tokens:\s*([\d.]+)(k?)\s*sent,(?:.*?,)?\s*([\d.]+)(k?)\s*received\."
    r"(?:\s*Cost:\s*\$([\d.]+)\s*message,\s*\$([\d.]+)\s*session\.)?"
)


class AiderReader(TextReader):
    """Aider prints `Tokens: 2.3k sent, 120 received. Cost: $0.01 message, $0.03 session.`
    after each model call; tokens add up, the session cost is already a total."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens_in: int | None = None
        self.tokens_out: int | None = None
        self.cost: float | None = None

    def feed(self, line: str) -> list[str]:
        match = _AIDER_TOKENS.search(line)
        if match is None:
            return super().feed(line)
        sent = float(match.group(1)) * (1000 if match.group(2) else 1)
        received = float(match.group(3)) * (1000 if match.group(4) else 1)
        self.tokens_in = (self.tokens_in or 0) + round(sent)
        self.tokens_out = (self.tokens_out or 0) + round(received)
        if match.group(6) is not None:
            self.cost = float(match.group(6))
        return []

    def report(self) -> Report:
        return dataclasses.replace(
            super().report(),
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            cost_usd=self.cost,
        )


# Claude Code's assistant-message `error` values (from its SDK) and what they mean here.
_CLAUDE_ERROR_KINDS = {
    "authentication_failed": "auth",
    "oauth_org_not_allowed": "auth",
    "billing_error": "auth",  # out of credit: a person must act, waiting does not help
    "rate_limit": "rate_limit",
    "overloaded": "rate_limit",
}
_CLAUDE_RESET = re.compile(r"\|(\d{10})\b")  # "Claude AI usage limit reached|1760000000"


class ClaudeStreamReader:
    """Claude Code's stream-json: `system` init, `assistant` and `user` messages, and a final
    `result` with the answer, `total_cost_usd` and `usage` (present on failed runs too)."""

    def __init__(self) -> None:
        self.result: dict[str, Any] | None = None
        self.message_usage: dict[str, dict[str, Any]] = {}  # per message id, the last seen
        self.last_text: str | None = None
        self.api_error: str | None = None  # an assistant message's `error` field
        self.api_error_text: str | None = None
        self.other: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def feed(self, line: str) -> list[str]:
        data = _json(line)
        if data is None:
            if not line.strip():
                return []
            self.other.append(line.rstrip())  # stderr, or a crash trace
            return [line.rstrip()]
        kind = data.get("type")
        if kind == "result":
            self.result = data
            text = data.get("result")
            return [text] if data.get("is_error") and isinstance(text, str) else []
        if kind == "assistant":
            message = data.get("message") or {}
            if not isinstance(message, dict):
                return []
            if isinstance(message.get("usage"), dict):
                self.message_usage[str(message.get("id"))] = message["usage"]
            texts = [
                b.get("text", "")
                for b in message.get("content") or []
                if isinstance(b, dict) and b.get("type") == "text"
            ]
            if any(t.strip() for t in texts):
                self.last_text = "\n".join(t for t in texts if t.strip())
            if isinstance(data.get("error"), str):
                self.api_error = data["error"]
                self.api_error_text = self.last_text
                return [self.last_text or self.api_error]
        return []

    @staticmethod
    def _tokens(usage: dict[str, Any]) -> tuple[int, int]:
        tokens_in = (
            _int(usage.get("input_tokens"))
            + _int(usage.get("cache_creation_input_tokens"))
            + _int(usage.get("cache_read_input_tokens"))
        )
        return tokens_in, _int(usage.get("output_tokens"))

    def report(self) -> Report:
        tokens_in: int | None = None
        tokens_out: int | None = None
        cost: float | None = None
        if self.result is not None and isinstance(self.result.get("usage"), dict):
            tokens_in, tokens_out = self._tokens(self.result["usage"])
        elif self.message_usage:  # still running: what the messages so far used
            pairs = [self._tokens(u) for u in self.message_usage.values()]
            tokens_in, tokens_out = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
        if self.result is not None:
            raw_cost = self.result.get("total_cost_usd")
            if isinstance(raw_cost, int | float) and not isinstance(raw_cost, bool):
                cost = float(raw_cost)
        result = self.result or {}
        final = result.get("result") if isinstance(result.get("result"), str) else None
        is_error = bool(result.get("is_error")) or (
            self.result is not None and str(result.get("subtype", "")).startswith("error")
        )
        error = None
        kind = _CLAUDE_ERROR_KINDS.get(self.api_error or "")
        if is_error:
            error = final or self.api_error_text or str(result.get("subtype") or "error")
        elif self.api_error and self.result is None:
            error = self.api_error_text  # an API error before any result line
        retry_at = None
        if kind == "rate_limit" and error and (m := _CLAUDE_RESET.search(error)):
            retry_at = float(m.group(1))
        return Report(
            summary=_clip(final if not is_error else None) or _clip(self.last_text),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=cost,
            is_error=is_error,
            error=_clip(error, 1000),
            error_kind=kind,
            retry_at=retry_at,
        )

    def messages(self) -> list[str]:
        found = list(self.other)
        if self.api_error_text:
            found.append(self.api_error_text)
        result = self.result or {}
        if result.get("is_error") and isinstance(result.get("result"), str):
            found.append(result["result"])
        return found


class CodexJsonReader:
    """`codex exec --json`: `thread.started`, `turn.started`, `item.*` (the agent's messages,
    commands, file changes), `turn.completed` with `usage`, `turn.failed`, and `error` events.
    Codex reports tokens but no cost (give the profile `token_prices` for cost caps)."""

    def __init__(self) -> None:
        self.final: str | None = None
        self.tokens_in: int | None = None
        self.tokens_out: int | None = None
        self.failed: str | None = None
        self.errors: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.other: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def feed(self, line: str) -> list[str]:
        data = _json(line)
        if data is None:
            if not line.strip():
                return []
            self.other.append(line.rstrip())
            return [line.rstrip()]
        kind = data.get("type")
        error: str | None = None
        if kind == "item.completed" and isinstance(data.get("item"), dict):
            item = data["item"]
            if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                self.final = item["text"]
            elif item.get("type") == "error" and isinstance(item.get("message"), str):
                error = item["message"]
        elif kind == "turn.completed" and isinstance(data.get("usage"), dict):
            usage = data["usage"]
            self.tokens_in = (self.tokens_in or 0) + _int(usage.get("input_tokens"))
            self.tokens_out = (self.tokens_out or 0) + _int(usage.get("output_tokens"))
        elif kind == "turn.failed":
            failure = data.get("error")
            message = failure.get("message") if isinstance(failure, dict) else None
            self.failed = error = str(message or "the turn failed")
        elif kind == "error" and isinstance(data.get("message"), str):
            error = data["message"]
        if error is None:
            return []
        self.errors.append(error)
        return [error]

    def report(self) -> Report:
        error = self.failed or (self.errors[-1] if self.errors else None)
        return Report(
            summary=_clip(self.final),
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            is_error=self.failed is not None,
            error=_clip(error, 1000),
        )

    def messages(self) -> list[str]:
        return [*self.other, *self.errors]


_SESSION_LINE = re.compile(r"^session_id:\s*(\S+)\s*$")  # Hermes, on exit


def session_in(kind: str, lines: list[str]) -> str | None:
    """The agent's own session id in its output, the last one said (None when it names
    none): what `resume` needs to go on with the same conversation. Claude Code puts it on
    every stream-json line, Codex in `thread.started`, Hermes prints `session_id: …`."""
    found: str | None = None
    for line in lines:
        if kind == "claude-stream-json":
            data = _json(line)
            if data is not None and isinstance(data.get("session_id"), str):
                found = data["session_id"]
        elif kind == "codex-json":
            data = _json(line)
            if data is not None and data.get("type") == "thread.started":
                found = str(data.get("thread_id") or "") or found
        elif match := _SESSION_LINE.match(line.strip()):
            found = match.group(1)
    return found
