"""The dispatcher's readable log (one line per event a person cares about, --log-json for
machines) and `kanban events` (the history, filtered, followed with -f). Real dispatcher
processes and real boards, both backends."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kanban
from kanban import clock, eventlog, views
from kanban.testing import board_in, kanban_process, kill_run_processes


@pytest.fixture
def board(repo: Path, repo_db: str) -> Iterator[kanban.Board]:
    b = board_in(repo, db=repo_db)
    yield b
    kill_run_processes(b)
    b.close()


def _dispatch_log(board: kanban.Board, *args: str) -> list[str]:
    """Run `kanban dispatch --drain --ok-if-blocked ARGS`; its log lines (stderr)."""
    assert board.settings.repo is not None
    proc = kanban_process(
        board.settings.repo,
        "dispatch",
        "--drain",
        "--ok-if-blocked",
        *args,
        env={"KANBAN_DB": board.url},
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == 0, out + err
    return err.splitlines()


@pytest.mark.slow
def test_the_dispatcher_logs_one_readable_line_per_event(board: kanban.Board) -> None:
    flaky = board.add("flaky", profile="demo", body="demo: fail-once boom")
    stuck = board.add("asks", profile="demo", body="demo: block pick a colour")
    lines = _dispatch_log(board)
    text = "\n".join(lines)
    assert not any("tick: {" in line for line in lines), text  # no dict per tick
    for card, title in ((flaky.id, "flaky"), (stuck.id, "asks")):
        assert f'INFO card {card} "{title}" claimed: attempt 1 on ' in text
        assert re.search(rf'INFO card {card} "{title}" started: agent pid \d+ in ', text), text
    assert re.search(
        rf'WARNING card {flaky.id} "flaky" failed \(attempt 1\): agent exit code 1: boom; '
        r"retry at \d{4}-\d\d-\d\dT[\d:.]+Z \(in [\d.]+m?s\)",
        text,
    ), text
    assert f'INFO card {flaky.id} "flaky" claimed: attempt 2 on ' in text
    assert f'INFO card {flaky.id} "flaky" done' in text
    assert f'WARNING card {stuck.id} "asks" blocked (attempt 1): pick a colour' in text


@pytest.mark.slow
def test_log_json_is_one_object_a_line_with_the_event(board: kanban.Board) -> None:
    card = board.add("fine", profile="demo")
    lines = _dispatch_log(board, "--log-json")
    parsed = [json.loads(line) for line in lines]  # every line is JSON
    kinds = [p["event"]["kind"] for p in parsed if "event" in p]
    assert kinds[:2] == ["claimed", "started"] and "run_ended" in kinds
    ended = next(p for p in parsed if p.get("event", {}).get("kind") == "run_ended")
    assert ended["level"] == "info" and ended["message"] == f'card {card.id} "fine" done'
    assert ended["event"]["card"] == card.id and ended["event"]["data"]["outcome"] == "done"


def test_events_lists_and_filters_the_history(cli: Any) -> None:
    cli.ok("add", "first", "--profile", "demo")
    cli.ok("add", "second", "--profile", "demo", "--parent", "1")
    cli.ok("comment", "2", "look at the first")
    all_lines = cli.ok("events").stdout.splitlines()
    assert [line.split("  ", 2)[2] for line in all_lines] == [
        'card 1 "first" created: status=ready',
        'card 2 "second" created: status=todo, parents=[1]',
        'card 2 "second" commented: ' + all_lines[2].split("commented: ", 1)[1],
    ]
    only = [
        json.loads(line) for line in cli.ok("events", "--card", "2", "--json").stdout.splitlines()
    ]
    assert {e["card"] for e in only} == {2} and only[0]["kind"] == "created"
    kinds = [
        json.loads(x)["kind"]
        for x in cli.ok("events", "--kind", "created", "--json").stdout.splitlines()
    ]
    assert kinds == ["created", "created"]
    assert cli.ok("events", "--since", "2099-01-01T00:00:00Z").stdout == ""
    assert len(cli.ok("events", "--since", "1h").stdout.splitlines()) == 3


def test_events_refuses_a_since_that_is_no_time(cli: Any) -> None:
    result = cli("events", "--since", "yesterday-ish")
    assert result.exit_code == 2
    assert "--since 'yesterday-ish' is neither a duration" in result.output


@pytest.mark.slow
def test_events_follow_prints_what_happens_after_it_started(
    repo: Path, board: kanban.Board
) -> None:
    board.add("before")
    proc = kanban_process(repo, "events", "-f", "--json", env={"KANBAN_DB": board.url})
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["title"] == "before"  # the history first
        board.add("after")
        follow = json.loads(proc.stdout.readline())  # then what comes next, as it comes
        assert (follow["kind"], follow["title"]) == ("created", "after")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _event(kind: str, **data: Any) -> views.EventView:
    return views.EventView(
        id=1, card_id=7, run_id=3, at=clock.now(), actor="x", kind=kind, data=data
    )


def test_describe_reclaimed_spawn_failed_and_given_up() -> None:
    now = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    reclaimed = _event(
        "run_ended",
        outcome="reclaimed",
        attempt=1,
        error="no heartbeat for 60s",
        card_status="ready",
        retry_at="2026-03-02T09:00:30+00:00",
    )
    assert eventlog.describe(reclaimed, title="t", now=now) == (
        'card 7 "t" reclaimed (attempt 1): no heartbeat for 60s; '
        "retry at 2026-03-02T09:00:30Z (in 30s)"
    )
    spawn = _event("run_ended", outcome="spawn_failed", attempt=3, error="x", card_status="blocked")
    assert eventlog.describe(spawn, now=now) == (
        "card 7 spawn failed (attempt 3): x; blocked: no attempts left"
    )


def test_events_refuses_a_since_without_a_unit(cli: Any) -> None:
    result = cli("events", "--since", "5")
    assert result.exit_code != 0
    assert "--since '5' has no unit: write 5s, 5m or 5h ago" in result.output
