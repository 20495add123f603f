"""Output readers over recorded transcripts: the final message, tokens, cost and the agent's
own error, for Claude Code's stream-json, Codex's --json, aider and plain text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kanban import outputs

DATA = Path(__file__).parent / "data"


def lines(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


def test_a_successful_claude_run_gives_its_answer_tokens_and_cost() -> None:
    report = outputs.read("claude-stream-json", lines("claude-stream-json-success.jsonl"))
    assert report.summary is not None and report.summary.startswith("The parser now sniffs")
    assert report.cost_usd == pytest.approx(0.0734214)
    assert report.tokens_in == 25 + 6137 + 87644  # cached input counts as input
    assert report.tokens_out == 519
    assert not report.is_error and report.error is None and report.error_kind is None


def test_claude_tokens_are_known_while_it_runs_and_the_result_line_settles_them() -> None:
    reader = outputs.reader("claude-stream-json")
    transcript = lines("claude-stream-json-success.jsonl")
    for line in transcript[:-1]:
        reader.feed(line)
    running = reader.report()
    assert running.cost_usd is None  # Claude reports cost only in its result line
    # One assistant message can span several lines with the same id: counted once.
    assert running.tokens_out == 97 + 231 + 88 + 61 + 42
    reader.feed(transcript[-1])
    assert reader.report().tokens_out == 519


def test_claude_not_logged_in_is_an_auth_error_in_its_own_words() -> None:
    """Recorded from the real `claude -p … --output-format stream-json --verbose`, no login."""
    reader = outputs.reader("claude-stream-json")
    said = [reader.feed(line) for line in lines("claude-stream-json-not-logged-in.jsonl")]
    report = reader.report()
    assert report.is_error and report.error_kind == "auth"
    assert report.error == "Not logged in · Please run /login"
    assert report.cost_usd == 0.0 and report.tokens_in == 0
    assert said[0] == []  # the init line is not the agent speaking
    assert "Not logged in · Please run /login" in reader.messages()


def _result(text: str, *, error: str | None, **extra: object) -> list[str]:
    assistant = {
        "type": "assistant",
        "message": {"id": "m1", "content": [{"type": "text", "text": text}]},
        "error": error,
    }
    result = {"type": "result", "subtype": "success", "is_error": True, "result": text, **extra}
    return [json.dumps(assistant), json.dumps(result)]


def test_claude_usage_limit_is_a_rate_limit_with_its_reset_time() -> None:
    report = outputs.read(
        "claude-stream-json",
        _result("Claude AI usage limit reached|1790000000", error="rate_limit"),
    )
    assert report.error_kind == "rate_limit"
    assert report.retry_at == 1790000000.0


def test_claude_tool_output_is_not_the_agents_own_words() -> None:
    """A test run printing '401 Unauthorized' inside a tool result must not look like a
    login problem: only errors and results are offered to the patterns."""
    tool = {
        "type": "user",
        "message": {"content": [{"type": "tool_result", "content": "401 Unauthorized"}]},
    }
    reader = outputs.reader("claude-stream-json")
    assert reader.feed(json.dumps(tool)) == []
    assert reader.messages() == []


def test_claude_error_subtypes_are_errors() -> None:
    result = {"type": "result", "subtype": "error_max_turns", "is_error": False, "usage": {}}
    report = outputs.read("claude-stream-json", [json.dumps(result)])
    assert report.is_error and report.error == "error_max_turns"


def test_codex_without_network_says_so_in_error_events() -> None:
    """Recorded from the real `codex exec --json`: it keeps reconnecting and never exits."""
    report = outputs.read("codex-json", lines("codex-json-no-network.log"))
    assert report.summary is None and report.tokens_in is None
    assert not report.is_error  # no turn failed: it is still trying
    assert report.error is not None and "Reconnecting" in report.error


def test_a_successful_codex_run_gives_its_message_and_tokens() -> None:
    events = [
        {"type": "thread.started", "thread_id": "t1"},
        {"type": "turn.started"},
        {"type": "item.completed", "item": {"id": "i0", "type": "reasoning", "text": "hm"}},
        {
            "type": "item.completed",
            "item": {"id": "i1", "type": "command_execution", "command": "pytest"},
        },
        {"type": "item.completed", "item": {"id": "i2", "type": "agent_message", "text": "Done."}},
        {
            "type": "turn.completed",
            "usage": {"input_tokens": 24763, "cached_input_tokens": 24448, "output_tokens": 122},
        },
    ]
    report = outputs.read("codex-json", [json.dumps(e) for e in events])
    assert report.summary == "Done."
    assert (report.tokens_in, report.tokens_out, report.cost_usd) == (24763, 122, None)
    assert not report.is_error


def test_a_failed_codex_turn_is_an_error_with_its_message() -> None:
    events = [
        {"type": "turn.started"},
        {"type": "turn.failed", "error": {"message": "unexpected status 401 Unauthorized"}},
    ]
    reader = outputs.reader("codex-json")
    said = [reader.feed(json.dumps(e)) for e in events]
    assert said[1] == ["unexpected status 401 Unauthorized"]
    report = reader.report()
    assert report.is_error and report.error == "unexpected status 401 Unauthorized"


def test_aider_token_and_cost_lines_add_up() -> None:
    output = [
        "Aider v0.86.2",
        "Tokens: 2.3k sent, 120 received. Cost: $0.0093 message, $0.0093 session.",
        "Applied edit to hello.txt",
        "Tokens: 3.1k sent, 1.2k cache write, 88 received. Cost: $0.01 message, $0.02 session.",
        "Commit 3f9c2ab feat: say hi",
    ]
    report = outputs.read("aider", output)
    assert report.tokens_in == 2300 + 3100
    assert report.tokens_out == 120 + 88
    assert report.cost_usd == 0.02  # the session total, not a sum
    assert report.summary == "Commit 3f9c2ab feat: say hi"


def test_plain_text_gives_the_last_line_and_nothing_else() -> None:
    report = outputs.read("text", ["working", "", "all done", "  "])
    assert report == outputs.Report(summary="all done")
    assert outputs.read("text", []).summary is None


def test_hermes_not_configured_is_plain_text() -> None:
    """Recorded from the real `hermes chat -q … -Q --yolo` with no provider configured."""
    reader = outputs.reader("text")
    for line in lines("hermes-not-configured.log"):
        reader.feed(line)
    assert any("no API keys or providers found" in m for m in reader.messages())


def test_every_output_kind_has_a_reader() -> None:
    for kind in outputs.OUTPUTS:
        assert outputs.read(kind, ["{not json", "plain"]).summary in ("plain", None)
