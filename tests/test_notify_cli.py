"""`kanban notify`: add, ls, rm, test, log; bad input refused with the reason, nothing made."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kanban.testing import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_add_ls_test_and_rm(cli: object, receiver: Receiver) -> None:
    run = cli.ok  # type: ignore[attr-defined]
    out = run(
        "notify", "add", "--webhook", receiver.url, "--on", "blocked,done", "--name", "team"
    ).output
    assert out.strip() == f"subscribed team: {receiver.url.rsplit('/', 1)[0]}/hook on blocked,done"
    listed = json.loads(run("notify", "ls", "--json").output)
    assert listed[0]["name"] == "team" and listed[0]["kinds"] == ["blocked", "done"]
    tested = run("notify", "test", "team").output
    assert "HTTP 200: received 200" in tested and "test to team: delivered" in tested
    [(headers, body, _)] = receiver.requests
    assert json.loads(body)["kind"] == "test" and headers["Kanban-Event-Kind"] == "test"
    run("notify", "rm", "team")
    assert json.loads(run("notify", "ls", "--json").output) == []


def test_notify_test_prints_what_a_failing_receiver_answered(
    cli: object, receiver: Receiver
) -> None:
    cli.ok("notify", "add", "--webhook", receiver.url, "--name", "r")  # type: ignore[attr-defined]
    receiver.default = 404
    result = cli("notify", "test", "r")  # type: ignore[operator]
    assert result.exit_code != 0
    assert "HTTP 404: received 404" in result.output and "test to r failed" in result.output


def test_a_command_hook_is_added_and_tested(cli: object, tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    script = f"import sys; open({str(seen)!r}, 'w').write(sys.stdin.read()); print('ok')"
    cli.ok("notify", "add", "--name", "local", "--command", "--", sys.executable, "-c", script)  # type: ignore[attr-defined]
    assert "ok" in cli.ok("notify", "test", "local").output  # type: ignore[attr-defined]
    assert json.loads(seen.read_text())["kind"] == "test"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--webhook", "ftp://example.com/x"], "only http:// and https://"),
        (["--webhook", "file:///etc/passwd"], "only http:// and https://"),
        (["--webhook", "http://"], "malformed webhook URL"),
        (["--webhook", "http://exa mple.com/x"], "malformed webhook URL"),
        (["--webhook", "http://127.0.0.1:99999/x"], "malformed webhook URL"),
        (["--webhook", "http://127.0.0.1:{closed}/x"], "is unreachable from here"),
        (["--webhook", "http://127.0.0.1:9/x", "--on", "blocked,explode"], "unknown event kind"),
        (["--webhook", "http://127.0.0.1:9/x", "--format", "teams"], "unknown format 'teams'"),
        (["--command", "no-such-program-here"], "not found on PATH"),
        (["--command", "/nonexistent/hook"], "not an executable file"),
        (["--command"], "give --webhook URL or --command"),
        ([], "give --webhook URL or --command"),
        (["--webhook", "http://127.0.0.1:9/x", "--secret-env", "hunter2 secret"], "--secret-env"),
        (["--webhook", "http://127.0.0.1:9/x", "--card", "999"], "999"),
        (["--webhook", "http://127.0.0.1:9/x", "--name", "bad name!"], "subscription name"),
        (["--command", "true", "--format", "slack"], "--format is for webhooks"),
    ],
)
def test_bad_input_is_refused_with_the_reason_and_nothing_is_created(
    cli: object, args: list[str], reason: str
) -> None:
    args = [a.replace("{closed}", str(_closed_port())) for a in args]
    if "--on" in args or "--format" in args or "--card" in args or "--name" in args:
        args.append("--no-check")  # refused for what it says, not for being unreachable
    result = cli("notify", "add", *args)  # type: ignore[operator]
    assert result.exit_code != 0
    assert reason in result.output
    assert json.loads(cli.ok("notify", "ls", "--json").output) == []  # type: ignore[attr-defined]


def test_a_duplicate_name_is_refused(cli: object, receiver: Receiver) -> None:
    cli.ok("notify", "add", "--webhook", receiver.url, "--name", "x")  # type: ignore[attr-defined]
    result = cli("notify", "add", "--webhook", receiver.url, "--name", "x")  # type: ignore[operator]
    assert result.exit_code != 0 and "exists" in result.output
    assert len(json.loads(cli.ok("notify", "ls", "--json").output)) == 1  # type: ignore[attr-defined]


def test_unknown_names_are_refused(cli: object) -> None:
    for verb in ("rm", "test"):
        result = cli("notify", verb, "ghost")  # type: ignore[operator]
        assert result.exit_code != 0 and "no subscription named 'ghost'" in result.output
    result = cli("notify", "redeliver", "12")  # type: ignore[operator]
    assert result.exit_code != 0 and "no finished delivery 12" in result.output


def test_dispatch_once_delivers_what_is_due_after_its_tick(cli: object, receiver: Receiver) -> None:
    run = cli.ok  # type: ignore[attr-defined]
    run("notify", "add", "--webhook", receiver.url, "--on", "blocked", "--name", "r")
    card = run("add", "Pick a database", "--json").output
    card_id = json.loads(card)["id"]
    run("block", str(card_id), "--reason", "Postgres or MySQL?")
    assert receiver.requests == []  # written to the outbox, not sent by the command
    run("dispatch", "--once", "-q")
    [event] = receiver.bodies()
    assert event["kind"] == "blocked" and event["card"]["id"] == card_id
    assert "sent 1" in run("notify", "ls").output
