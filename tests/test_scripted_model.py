"""The scripted model service (kanban.scripted_model) speaks each wire protocol the real
agents use, plays its script by the conversation's own position, and records requests.
The agents themselves drive it in tests/realagents; here a plain HTTP client checks the
contract, so a change to the fake that would fool those tests fails here first."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from kanban import scripted_model as sm

BASH = {"name": "Bash", "input_schema": {"properties": {"command": {}, "description": {}}}}
EXEC = {"type": "function", "name": "exec_command", "parameters": {"properties": {"cmd": {}}}}
TERMINAL = {"type": "function", "function": {"name": "terminal", "parameters": {}}}
PROMPT = "Report with this exact command (an absolute path):\n`/opt/venv/bin/kanban`\n"


def post(url: str, body: dict[str, Any]) -> tuple[str, str]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers.get("Content-Type", ""), response.read().decode()


def sse(text: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[6:])
        for line in text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


def script() -> list[sm.Step]:
    return [sm.Shell("{kanban} complete --summary ok", usage=sm.Usage(7, 3)), sm.Say("bye")]


def test_anthropic_messages_stream_a_tool_call_then_the_final_message() -> None:
    with sm.ScriptedModel(script()) as model:
        body = {"stream": True, "tools": [BASH], "messages": [{"role": "user", "content": PROMPT}]}
        kind, text = post(f"{model.url}/v1/messages", body)
        assert kind == "text/event-stream"
        events = sse(text)
        assert events[0]["type"] == "message_start"
        start = next(e for e in events if e["type"] == "content_block_start")
        assert start["content_block"]["name"] == "Bash"
        delta = next(e for e in events if e["type"] == "content_block_delta")
        args = json.loads(delta["delta"]["partial_json"])
        assert args["command"] == "/opt/venv/bin/kanban complete --summary ok"  # from the prompt
        stop = next(e for e in events if e["type"] == "message_delta")
        assert stop["delta"]["stop_reason"] == "tool_use" and stop["usage"]["output_tokens"] == 3

        later = body | {
            "stream": False,
            "messages": [
                *body["messages"],
                {"role": "assistant", "content": [{"type": "tool_use"}]},
                {"role": "user", "content": [{"type": "tool_result", "content": "ok"}]},
            ],
        }
        _, reply = post(f"{model.url}/v1/messages", later)
        assert json.loads(reply)["content"] == [{"type": "text", "text": "bye"}]
        side = {"messages": [{"role": "user", "content": "a title please"}]}
        post(f"{model.url}/v1/messages", side)  # no tools: a side call, not the script
        assert [r.step for r in model.calls("/messages")] == [0, 1, None]


def test_openai_responses_stream_a_function_call_with_the_agents_own_argument_names() -> None:
    with sm.ScriptedModel(script()) as model:
        body = {"stream": True, "tools": [EXEC], "input": [{"role": "user", "content": PROMPT}]}
        _, text = post(f"{model.v1}/responses", body)
        events = sse(text)
        done = next(e for e in events if e["type"] == "response.output_item.done")
        assert done["item"]["type"] == "function_call" and done["item"]["name"] == "exec_command"
        assert json.loads(done["item"]["arguments"]) == {
            "cmd": "/opt/venv/bin/kanban complete --summary ok"
        }
        completed = events[-1]
        assert completed["type"] == "response.completed"
        assert completed["response"]["usage"]["input_tokens"] == 7


def test_chat_completions_stream_tool_calls_and_answer_plain_edits_for_aider() -> None:
    with sm.ScriptedModel(script()) as model:
        body = {
            "stream": True,
            "tools": [TERMINAL],
            "messages": [{"role": "user", "content": PROMPT}],
        }
        _, text = post(f"{model.v1}/chat/completions", body)
        chunks = sse(text)
        calls = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls")]
        assert calls[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "terminal"
        assert chunks[-1]["usage"]["prompt_tokens"] == 7
    edits = [sm.Edit("a.txt", "hello"), sm.Say("done")]
    with sm.ScriptedModel(edits) as model:
        system = {"role": "system", "content": "Act as an expert software developer."}
        example = {"role": "assistant", "content": "an example reply in the system prompt"}
        body = {"messages": [system, example, {"role": "user", "content": "write a.txt"}]}
        _, reply = post(f"{model.v1}/chat/completions", body)
        content = json.loads(reply)["choices"][0]["message"]["content"]
        assert content == "a.txt\n```\nhello\n```\n"  # Aider's whole-file edit block
        commit = {"messages": [{"role": "system", "content": "Write a commit message."}]}
        post(f"{model.v1}/chat/completions", commit)
        assert [r.step for r in model.calls("/chat/completions")] == [0, None]


def test_a_script_must_end_with_the_final_message() -> None:
    with pytest.raises(ValueError, match="ends with Say"):
        sm.ScriptedModel([sm.Shell("true")])


def test_point_agent_writes_each_agents_own_settings(tmp_path: Any) -> None:
    with sm.ScriptedModel([sm.Say("hi")]) as model:
        assert sm.point_agent("claude", model, tmp_path)["ANTHROPIC_BASE_URL"] == model.url
        assert sm.point_agent("codex", model, tmp_path) == {"OPENAI_API_KEY": "sk-scripted"}
        assert f'base_url = "{model.v1}"' in (tmp_path / ".codex" / "config.toml").read_text()
        sm.point_agent("hermes", model, tmp_path)
        assert f"base_url: {model.v1}" in (tmp_path / ".hermes" / "config.yaml").read_text()
        assert sm.point_agent("aider", model, tmp_path)["AIDER_OPENAI_API_BASE"] == model.v1
        with pytest.raises(ValueError, match="unknown agent"):
            sm.point_agent("nope", model, tmp_path)


def test_a_tool_step_calls_an_mcp_tool_by_its_short_name() -> None:
    tool = {"name": "mcp__kanban__kanban_complete", "input_schema": {"properties": {}}}
    with sm.ScriptedModel([sm.Tool("kanban_complete", {"summary": "ok"}), sm.Say("bye")]) as m:
        body = {"tools": [BASH, tool], "messages": [{"role": "user", "content": "go"}]}
        _, reply = post(f"{m.url}/v1/messages", body)
        block = json.loads(reply)["content"][0]
        assert block["name"] == "mcp__kanban__kanban_complete"
        assert block["input"] == {"summary": "ok"}
