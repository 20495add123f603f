"""--json everywhere, errors as JSON under --json, and every id, name and length limit
checked before the database sees it, on both backends (issue 15, item 14)."""

from __future__ import annotations

import json

import pytest

from kanban.cli import cli as root
from kanban.cli import reference
from tests.conftest import Cli

# Commands that print no data of their own (a server, a long-lived loop's log).
NOT_DATA = {"serve", "mcp"}


def test_every_data_command_takes_json() -> None:
    missing = [
        " ".join(path)
        for path, cmd in reference.walk(root)
        if path
        and not hasattr(cmd, "commands")
        and path[-1] not in NOT_DATA
        and "--json" not in {o for p in cmd.params for o in getattr(p, "opts", [])}
    ]
    assert missing == [], f"commands without --json: {missing}"


def test_logs_and_context_as_json(cli: Cli) -> None:
    cli.ok("add", "x", "--profile", "demo", "--body", "the body")
    ctx = json.loads(cli.ok("context", "1", "--json").stdout)
    assert ctx["card"] == 1 and ctx["attempt"] == 1
    assert ctx["branch"].startswith("kanban/1-x-")  # the board's id follows (board identity)
    assert "the body" in ctx["prompt"]
    token = json.loads(cli.ok("claim", "--json").stdout)["token"]
    log = json.loads(cli.ok("logs", "1", "--json").stdout)
    assert log["card"] == 1 and log["text"] is None  # claimed by hand: no log written
    assert cli("logs", "1", "--json", "-f").exit_code == 2
    cli.ok("fail", "1", "--token", token, "--error", "boom")


def test_link_and_unlink_as_json(cli: Cli) -> None:
    cli.ok("add", "a")
    cli.ok("add", "b")
    assert json.loads(cli.ok("link", "1", "2", "--json").stdout) == {
        "parent": 1,
        "child": 2,
        "created": True,
    }
    assert json.loads(cli.ok("unlink", "1", "2", "--json").stdout)["removed"] is True


@pytest.mark.parametrize(
    ("args", "code", "kind", "expected"),
    [
        (["show", "99"], 3, "CardNotFound", "no card 99 on this board"),
        (["show", "x"], 2, "UsageError", "a card id is a positive number"),
        (["goal", "show", "5"], 3, None, "no goal 5"),
        (["add", "x", "--profile", "shel"], 6, "ProfileError", "unknown profile 'shel'"),
        (["ls", "--status", "nope"], 2, "UsageError", "unknown status 'nope'"),
    ],
)
def test_errors_under_json_are_one_json_object_on_stderr(
    cli: Cli, args: list[str], code: int, kind: str | None, expected: str
) -> None:
    result = cli(*args, "--json")
    assert result.exit_code == code
    assert result.stdout == ""
    error = json.loads(result.stderr)
    assert error["exit_code"] == code
    assert expected in error["error"]
    if kind:
        assert error["kind"] == kind
    # Without --json the same refusal is one line of text.
    plain = cli(*args)
    assert plain.exit_code == code
    assert expected in plain.stderr and not plain.stderr.lstrip().startswith("{")


LONG = "x" * 300


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["show", "\u00b2"], None, "a card id is a positive number"),
        (["show", str(2**31)], None, "ids go up to 2147483647"),
        (["show", "9" * 40], None, "ids go up to 2147483647"),
        (["edit", str(2**31), "--priority", "1"], None, "ids go up to"),
        (["logs", "1", "--run", str(2**31)], None, "ids go up to"),
        (["goal", "show", str(2**31)], None, "ids go up to"),
        (["cancel", "--goal", str(2**40)], None, "ids go up to"),
        (["link", "1", str(2**31)], None, "ids go up to"),
        (["claim", "--worker", LONG], None, "1 to 255 printable characters"),
        (["add", "x"], {"KANBAN_ACTOR": LONG}, "the actor (KANBAN_ACTOR"),
        (["add", "x"], {"KANBAN_HOST_ID": LONG}, "the host id (KANBAN_HOST_ID"),
        (["add", "x", "--key", LONG], None, "the limit is 255"),
        (["add", "t" * 600], None, "the limit is 500"),
        (["add", "x", "--profile", LONG], None, "is not valid"),
        (["cron", "add", "@daily", "--name", LONG, "--card", "t"], None, "up to 128"),
        (["add", "x", "--priority", str(2**40)], None, "out of range"),
    ],
)
def test_limits_are_checked_before_the_database_on_both_backends(
    cli: Cli, args: list[str], env: dict[str, str] | None, expected: str
) -> None:
    cli.ok("add", "the one card")
    result = cli(*args, env=env)
    assert result.exit_code != 0
    assert expected in result.output, result.output
    assert "Traceback" not in result.output
    assert "database error" not in result.output
    assert [c["id"] for c in json.loads(cli.ok("ls", "--json").stdout)] == [1]


AGENT_TEXT = "\x1b[31mred\x1b[0m failure\x1b]0;title\x07 \x9b2J C1 \x7f"


def test_json_keeps_agent_text_as_it_is_escaped_and_text_output_strips_it(cli: Cli) -> None:
    """--json carries the text exactly, every control character as a \\u escape (so the JSON
    itself prints safely); the text output of the same command has no escape at all."""
    cli.ok("add", "x", "--profile", "demo")
    token = json.loads(cli.ok("claim", "--json").stdout)["token"]
    cli.ok("fail", "1", "--token", token, "--error", AGENT_TEXT)
    out = cli.ok("runs", "1", "--json").stdout
    assert not any(ch in out for ch in "\x1b\x07\x9b\x7f"), "no raw control character"
    assert "\\u001b[31mred" in out and "\\u009b" in out and "\\u007f" in out
    assert json.loads(out)[0]["error"] == AGENT_TEXT
    shown = json.loads(cli.ok("show", "1", "--json").stdout)
    assert shown["runs"][0]["error"] == AGENT_TEXT
    text = cli.ok("runs", "1").stdout + cli.ok("show", "1").stdout
    assert not any(ch in text for ch in "\x1b\x07\x9b\x7f"), text
    assert "red failure" in text


def test_a_title_starting_with_a_dash_gets_a_hint(cli: Cli) -> None:
    result = cli("add", "-fix the flag")
    assert result.exit_code == 2
    assert "a title that starts with '-' goes after `--`: kanban add -- '-fix the flag'" in (
        result.output
    )
    cli.ok("add", "--", "-fix the flag")
    assert json.loads(cli.ok("ls", "--json").stdout)[0]["title"] == "-fix the flag"


def test_durations_need_a_unit(cli: Cli) -> None:
    result = cli("add", "x", "--timeout", "5")
    assert result.exit_code == 2
    assert "'5' has no unit: write 5s, 5m or 5h" in result.output
    cli.ok("add", "x", "--timeout", "5m")
    assert json.loads(cli.ok("show", "1", "--json").stdout)["card"]["timeout"] == 300.0


def test_schedule_moves_as_json(cli: Cli) -> None:
    cli.ok("cron", "add", "@daily", "--name", "nightly", "--card", "report", "--profile", "demo")
    assert json.loads(cli.ok("cron", "pause", "nightly", "--json").stdout)["paused"] is True
    assert json.loads(cli.ok("cron", "resume", "nightly", "--json").stdout)["paused"] is False
    assert json.loads(cli.ok("cron", "rm", "nightly", "--json").stdout) == {
        "name": "nightly",
        "removed": True,
    }
