"""Schedules: exactly one fire per (schedule, time) across processes, overlap and catch-up
policies, refusals. Schedules are evaluated with `dispatch --once --at TIME`, so nothing
waits for the clock; `add` pins when a schedule was added (its `created_at`)."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import kanban
from kanban import clock, cron, dispatcher, schedules
from kanban.states import ScheduleKind
from kanban.testing import fire_schedules, snapshot

Cli = Any  # the `cli` fixture (tests/conftest.py): `kanban` in-process against one board

ADDED = "2026-03-02T06:10:00Z"  # a Monday
# A past 09:00:30 whatever the hour the tests run at (a future --at is refused).
YESTERDAY_0900 = f"{dt.date.today() - dt.timedelta(days=1)}T09:00:30"
LATER = f"{dt.date.today() + dt.timedelta(days=2)}T09:00"


def add(cli: Cli, *args: str, when: str = ADDED) -> None:
    """`kanban cron add`, as if run at `when`: the new schedule's `created_at` is set to it
    (a PostgreSQL board's clock is the server's, which no time travel here moves)."""
    cli.ok("cron", "add", *args)
    with kanban.open_board(cli.db) as board, board.engine.begin() as conn:
        newest = conn.execute(sa.text("SELECT max(id) FROM schedules")).scalar_one()
        conn.execute(
            sa.text("UPDATE schedules SET created_at = :at WHERE id = :id"),
            {"at": dt.datetime.fromisoformat(when.replace("Z", "+00:00")), "id": newest},
        )


def dispatch_at(cli: Cli, when: str) -> dict[str, Any]:
    result = cli.ok("dispatch", "--once", "-q", "--json", "--at", when)
    report: dict[str, Any] = json.loads(result.stdout)
    return report["hooks"]["schedules"]


def titles(board_url: str) -> list[str]:
    with kanban.open_board(board_url) as board:
        return [c.title for c in board.cards()]


def fires(board_url: str) -> list[tuple[Any, ...]]:
    with kanban.open_board(board_url) as board, board.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text("SELECT fire_at, card_id, goal_id, skipped FROM schedule_fires ORDER BY id")
            )
        ]


# ----------------------------------------------------------------- exactly one fire


@pytest.mark.slow
def test_two_dispatchers_at_the_same_fire_time_make_one_card(cli: Cli, board_url: str) -> None:
    cli.ok("cron", "add", "0 9 * * *", "--name", "daily", "--card", "Daily report")
    argv = [sys.executable, "-m", "kanban", "--db", board_url, "dispatch", "--once", "-q"]
    procs = [
        subprocess.Popen(
            [*argv, "--at", YESTERDAY_0900],
            cwd=cli.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
    assert titles(board_url) == ["Daily report"]
    assert len(fires(board_url)) == 1

    again = cli.run_process("dispatch", "--once", "-q", "--at", YESTERDAY_0900)
    assert again.returncode == 0, again.stderr
    assert titles(board_url) == ["Daily report"]


@pytest.mark.slow
def test_without_the_tick_lock_the_unique_fire_row_still_stops_a_double_fire(
    cli: Cli, board_url: str, tmp_path: Path
) -> None:
    cli.ok("cron", "add", "0 9 * * *", "--name", "daily", "--card", "Daily report")
    go = tmp_path / "go"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(6) as pool:
        pending = pool.starmap_async(fire_schedules, [(board_url, YESTERDAY_0900, str(go))] * 6)
        go.touch()
        made = pending.get(timeout=120)
    assert sorted(made) == [0, 0, 0, 0, 0, 1]
    assert titles(board_url) == ["Daily report"]


def test_a_fire_row_that_exists_means_nothing_is_made(cli: Cli, board_url: str) -> None:
    """The insert under the unique constraint is the only check: a row already there (another
    host's fire) stops the card, even with the schedule's mark never moved."""
    add(cli, "0 9 * * *", "--name", "daily", "--card", "Daily report")
    with kanban.open_board(board_url) as board, board.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO schedule_fires (schedule_id, fire_at, at, manual) "
                "VALUES (1, '2026-03-02 09:00:00.000000', '2026-03-02 09:00:01.000000', false)"
            )
        )
    assert dispatch_at(cli, "2026-03-02T09:00:30Z").get("fired") is None
    assert titles(board_url) == []


# ------------------------------------------------------------- overlap and catch-up


def test_overlap_skip_makes_nothing_while_the_last_card_is_open(cli: Cli, board_url: str) -> None:
    add(cli, "*/10 * * * *", "--name", "sync", "--card", "Sync {time}")
    assert dispatch_at(cli, "2026-03-02T06:20:30Z")["fired"][0]["card"] == 1
    skipped = dispatch_at(cli, "2026-03-02T06:30:30Z")["skipped"]
    assert skipped[0]["skipped"] == "overlap: card 1 from an earlier fire is still open"
    assert titles(board_url) == ["Sync 06:20"]
    cli.ok("complete", "1")
    assert dispatch_at(cli, "2026-03-02T06:40:30Z")["fired"][0]["card"] == 2
    assert titles(board_url) == ["Sync 06:20", "Sync 06:40"]
    assert [f[3] for f in fires(board_url)] == [None, skipped[0]["skipped"], None]


def test_overlap_allow_makes_a_card_at_every_fire(cli: Cli, board_url: str) -> None:
    add(cli, "*/10 * * * *", "--name", "sync", "--card", "Sync {time}", "--overlap", "allow")
    dispatch_at(cli, "2026-03-02T06:20:30Z")
    dispatch_at(cli, "2026-03-02T06:30:30Z")
    assert titles(board_url) == ["Sync 06:20", "Sync 06:30"]


@pytest.mark.parametrize(
    ("policy", "after_downtime"),
    [
        ("none", []),
        ("latest", ["Report 09:00"]),
        ("all", ["Report 07:00", "Report 08:00", "Report 09:00"]),
    ],
)
def test_catch_up_after_a_dispatcher_was_down_across_several_fires(
    cli: Cli, board_url: str, policy: str, after_downtime: list[str]
) -> None:
    add(
        cli,
        "0 * * * *",
        "--name",
        "report",
        "--card",
        "Report {time}",
        "--overlap",
        "allow",
        "--catch-up",
        policy,
    )
    assert dispatch_at(cli, "2026-03-02T06:30:00Z").get("fired") is None
    # The dispatcher is down from 06:30 to 09:30: fires at 07:00, 08:00 and 09:00 are missed.
    dispatch_at(cli, "2026-03-02T09:30:00Z")
    assert titles(board_url) == after_downtime
    # Back on time: the 10:00 fire is made under every policy, and nothing is made twice.
    dispatch_at(cli, "2026-03-02T10:00:20Z")
    dispatch_at(cli, "2026-03-02T10:00:40Z")
    assert titles(board_url) == [*after_downtime, "Report 10:00"]


def test_a_time_zone_decides_the_fire_time_and_at_reads_wall_time_there(
    cli: Cli, board_url: str
) -> None:
    add(
        cli,
        "0 9 * * 1-5",
        "--name",
        "standup",
        "--card",
        "Standup {datetime}",
        "--tz",
        "Europe/Paris",
    )
    assert dispatch_at(cli, "2026-03-02T08:00:30Z")["fired"][0]["fire_at"] == "2026-03-02T08:00:00Z"
    assert titles(board_url) == ["Standup 2026-03-02 09:00"]
    # Saturday 09:00:30 in Paris: 1-5 is Monday to Friday, as in crontab, so the fire due is
    # Friday's, missed (catch-up latest), not Saturday's.
    cli.ok("complete", "1")
    (fired,) = dispatch_at(cli, "2026-03-07T09:00:30")["fired"]
    assert fired["fire_at"] == "2026-03-06T08:00:00Z"


# ------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["cron", "add", "0 9 * *", "--name", "x", "--card", "t"],
            12,
            "kanban: malformed cron expression '0 9 * *': it has 4 field(s); write five fields",
        ),
        (
            ["cron", "add", "0 9 * * 8", "--name", "x", "--card", "t"],
            12,
            "kanban: malformed cron expression '0 9 * * 8': day of week '8' is not 0-7",
        ),
        (
            ["cron", "add", "0 9 * * *", "--name", "x", "--card", "t", "--tz", "Mars/Base"],
            12,
            "kanban: unknown time zone 'Mars/Base'; use an IANA name such as UTC",
        ),
        (
            ["cron", "add", "0 9 30 2 *", "--name", "x", "--card", "t"],
            12,
            "kanban: cron expression '0 9 30 2 *' never fires",
        ),
        (
            ["cron", "add", "@daily", "--name", "x", "--card", "t", "--goal", "g"],
            2,
            "kanban: give --card TITLE or --goal OBJECTIVE (exactly one)",
        ),
        (
            ["cron", "add", "@daily", "--name", "x", "--goal", "g", "--profile", "demo"],
            2,
            "kanban: --profile belong(s) to --card",
        ),
        (
            ["cron", "add", "@daily", "--name", "x", "--card", "t", "--profile", "gpt-9"],
            6,
            "kanban: unknown profile 'gpt-9'",
        ),
        (
            ["cron", "add", "@daily", "--name", "no spaces", "--card", "t"],
            2,
            "kanban: schedule name 'no spaces' is not valid",
        ),
        (
            ["cron", "add", "@daily", "--name", "daily", "--card", "t"],
            12,
            "kanban: a schedule named 'daily' exists",
        ),
        (["cron", "rm", "nope"], 3, "kanban: no schedule named 'nope' on this board"),
        (["cron", "run", "nope"], 3, "kanban: no schedule named 'nope' on this board"),
        (["dispatch", "--once", "--at", "teatime"], 2, "kanban: --at 'teatime' is not a time"),
        (["dispatch", "--at", "09:00"], 2, "kanban: --at needs --once"),
        (
            ["dispatch", "--once", "--at", "9999-12-31T00:00:00Z"],
            2,
            "kanban: --at 9999-12-31T00:00:00Z (in UTC) is in the future",
        ),
        (["dispatch", "--once", "--at", LATER], 2, f"kanban: --at {LATER}"),
    ],
)
def test_bad_schedules_are_refused_with_one_clear_line_and_change_nothing(
    cli: Cli, board_url: str, args: list[str], code: int, message: str
) -> None:
    cli.ok("cron", "add", "@daily", "--name", "daily", "--card", "Daily")
    with kanban.open_board(board_url) as board:
        before = snapshot(board.engine)
    result = cli(*args)
    assert result.exit_code == code, result.output
    assert result.output.startswith(message), result.output
    assert result.output.count("\n") == 1
    with kanban.open_board(board_url) as board:
        after = snapshot(board.engine)
    assert after == before


def test_marks_never_move_past_the_real_now(cli: Cli, board_url: str) -> None:
    """Even called with a future `at` (the CLI refuses one), a tick fires nothing early and
    leaves the mark at or before now, so the schedule keeps firing on time."""
    cli.ok("cron", "add", "* * * * *", "--name", "minutely", "--card", "Tick")
    now = clock.now()
    with kanban.open_board(board_url) as board:
        report = board.schedules.fire_due(now, at=cron.parse_at("9999-12-31T00:00:00Z"))
        (schedule,) = board.tx.read(kanban.board.schedules.list_schedules)
    # As times, not strings: "…:00Z" sorts after "…:00.5Z" though it is earlier.
    fired = [dt.datetime.fromisoformat(f["fire_at"].replace("Z", "+00:00")) for f in report.fired]
    assert all(at <= now for at in fired)
    assert schedule.last_fire_at is None or schedule.last_fire_at <= now


# ------------------------------------------------------------------ the other verbs


def test_ls_pause_resume_run_and_rm(cli: Cli, board_url: str) -> None:
    add(cli, "0 9 * * *", "--name", "daily", "--card", "Daily {date}", "--tz", "Asia/Tokyo")
    (listed,) = json.loads(cli.ok("cron", "ls", "--json").stdout)
    assert (listed["name"], listed["tz"], listed["paused"]) == ("daily", "Asia/Tokyo", False)
    assert listed["next_fire"].endswith("T00:00:00Z")  # 09:00 in Tokyo
    assert listed["last_fire"] is None

    cli.ok("cron", "pause", "daily")
    assert json.loads(cli.ok("cron", "ls", "--json").stdout)[0]["next_fire"] is None
    assert dispatch_at(cli, "2026-03-03T09:00:10").get("fired") is None
    cli.ok("cron", "resume", "daily")

    made = json.loads(cli.ok("cron", "run", "daily", "--json").stdout)
    assert made["manual"] is True and made["card_id"] == 1
    assert titles(board_url)[0].startswith("Daily 20")
    (listed,) = json.loads(cli.ok("cron", "ls", "--json").stdout)
    assert listed["last_fire"]["card_id"] == 1
    assert "daily" in cli.ok("cron", "ls").stdout

    cli.ok("cron", "rm", "daily")
    assert cli.ok("cron", "ls").stdout == "no schedules\n"
    assert len(titles(board_url)) == 1  # what it made stays


def test_a_goal_schedule_puts_a_goal_with_its_planner_on_the_board(
    cli: Cli, board_url: str
) -> None:
    add(
        cli,
        "@daily",
        "--name",
        "nightly",
        "--goal",
        "Triage the issues of {date}",
        "--planner",
        "demo",
        "--judge",
        "demo",
        "--max-turns",
        "2",
    )
    with kanban.open_board(board_url) as board:
        # The schedule step alone (a dispatch would also start the planner's agent).
        fired = board.schedules.fire_due(clock.now(), at=cron.parse_at("2026-03-03T00:00:30Z"))
        assert fired.fired[0]["goal"] == 1
        detail = board.goals.show(1)
        assert detail.goal.objective == "Triage the issues of 2026-03-03"
        assert (detail.goal.judge, detail.goal.max_turns) == ("demo", 2)
        assert [c.role for c in detail.cards] == ["planner"]
        # The goal is still open the next night: overlap skip makes nothing.
        again = board.schedules.fire_due(clock.now(), at=cron.parse_at("2026-03-04T00:00:30Z"))
    assert again.skipped[0]["skipped"] == "overlap: goal 1 from an earlier fire is still open"


def test_the_tick_reports_the_next_fire_as_next_due(board: kanban.Board) -> None:
    now = clock.now()
    board.schedules.add(
        "*/5 * * * *",
        name="soon",
        kind=ScheduleKind.CARD,
        template=schedules.card_template("Soon", profile=None, body="", repo=None),
    )
    loop = dispatcher.Dispatcher(board)  # schedules are a standard step of every tick
    report = loop.tick(now)
    expected = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=5 - now.minute % 5)
    assert report.next_due == expected
    assert report.to_json()["hooks"]["schedules"]["next_due"] == clock.iso(expected)
