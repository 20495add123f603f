"""The board's clock: on PostgreSQL every lease is stamped and compared on the database
server's time, measured against each host's monotonic clock; on SQLite the host's own.

Hosts with clocks shifted both ways (KANBAN_TEST_CLOCK_SKEW moves a process's own clock)
share one board: every card is done once, no card ever has two live agents, and no run is
reclaimed while its host heartbeats. Each dispatcher records how far off its clock is, and
`kanban status` / `kanban why` say so past `clock.SKEW_WARN`."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from pods import Pods

from kanban import clock
from kanban.testing import board_in, wait_for

SLEEPER = 'command = ["sleep", "1.5"]\nworkspace = "none"\nconcurrency = 4\n'


def _in_process(code: str, *, skew: float, db: str, cwd: Path) -> dict[str, float]:
    """Run `code` (which prints JSON) in a fresh interpreter whose own clock is `skew` off."""
    env = {**os.environ, "KANBAN_TEST_CLOCK_SKEW": str(skew), "KANBAN_DB": db}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


_MEASURE = """
import datetime as dt, json
from kanban import api, clock, settings
with api.connect(settings.load()) as b:
    board_now = clock.now()  # opening the board read the database's clock (PostgreSQL)
    server = (
        dt.datetime.now(dt.UTC)
        if b.engine.dialect.name == "sqlite"
        else b.tx.read(lambda c: c.exec_driver_sql("SELECT clock_timestamp()").scalar_one())
    )
print(json.dumps({"board_vs_real": (board_now - server).total_seconds(),
                  "local_vs_real": (clock.local_now() - dt.datetime.now(dt.UTC)).total_seconds(),
                  "offset": clock.offset()}))
"""


@pytest.mark.parametrize("skew", [-90.0, 90.0])
def test_the_board_clock_is_the_databases_whatever_the_hosts_clock_says(
    repo: Path, backend: str, board_url: str, skew: float
) -> None:
    with board_in(repo, db=board_url):
        pass
    seen = _in_process(_MEASURE, skew=skew, db=board_url, cwd=repo)
    assert abs(seen["local_vs_real"] - skew) < 1.0  # the injected shift is really there
    if backend == "postgres":
        assert abs(seen["board_vs_real"]) < 0.5, seen  # the server's time, not the host's
        assert seen["offset"] is not None and abs(seen["offset"] - skew) < 0.5
    else:
        assert abs(seen["board_vs_real"] - skew) < 1.0, seen  # SQLite: the host's own clock
        assert seen["offset"] is None


def test_a_reading_is_carried_forward_on_the_monotonic_clock() -> None:
    board = clock.BoardClock()
    server = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    reading = board.measure(lambda: server)
    assert reading.rtt >= 0
    assert abs(reading.offset - (clock.local_now() - server).total_seconds()) < 1.0
    first = board.now()
    time.sleep(0.05)
    later = board.now()
    assert server <= first < later < server + dt.timedelta(seconds=1)
    assert not board.due() or clock.SYNC_EVERY <= 0.05
    # A slow answer does not replace a recent fast one: it says less about the time.
    board.measure(lambda: (time.sleep(0.3), server + dt.timedelta(hours=1))[1])
    assert board.now() < server + dt.timedelta(minutes=1)


def test_a_bad_skew_value_is_refused_with_what_to_write(repo: Path) -> None:
    with board_in(repo, db=str(repo / "b.db")):
        pass
    env = {**os.environ, "KANBAN_TEST_CLOCK_SKEW": "ninety"}
    out = subprocess.run(
        [sys.executable, "-m", "kanban", "--db", str(repo / "b.db"), "status"],
        env=env,
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0
    assert "KANBAN_TEST_CLOCK_SKEW" in out.stderr and "Traceback" not in out.stderr


def test_status_and_why_warn_about_a_dispatcher_whose_clock_is_off(
    repo: Path, board_url: str, cli: object
) -> None:
    from kanban import board as verbs

    with board_in(repo, db=board_url) as b:
        card = b.add("anything")
        now = clock.now()
        for name, offset in (("far-host:1", 42.0), ("good-host:1", 0.3)):
            b.tx.write(
                lambda c, name=name, offset=offset: verbs.dispatchers.beat(
                    c,
                    name=name,
                    host=name.split(":")[0],
                    pid=1,
                    started_at=now,
                    now=now,
                    interval=60.0,
                    version="x",
                    clock_offset=offset,
                )
            )
    status = cli("status")  # type: ignore[operator]
    assert "far-host:1's clock is 42s ahead of the database's" in status.output
    assert "good-host" not in status.output.split("dispatcher alive")[-1].split("\n", 1)[-1]
    why = cli("why", str(card.id))  # type: ignore[operator]
    assert "far-host:1's clock is 42s ahead" in why.output
    data = json.loads(cli("status", "--json").output)  # type: ignore[operator]
    assert len(data["clock_warnings"]) == 1


@pytest.fixture
def pods(tmp_path: Path, shared_postgres_url: str) -> Iterator[Pods]:
    made = Pods(tmp_path, shared_postgres_url)
    made.profiles = {"sleeper": SLEEPER}
    yield made
    made.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_hosts_with_clocks_shifted_both_ways_share_leases_without_a_reclaim(pods: Pods) -> None:
    """One host 90 s ahead, one 90 s behind, leases of 5 s: on the hosts' own clocks the
    ahead host would reclaim every run of the other one at its first tick, and the behind
    host would see its own claims expire at once. On the database's clock nothing expires."""
    with pods.board() as b:
        ids = [b.add(f"card {i}", profile="sleeper").id for i in range(12)]
        # The behind host first: the ahead one's very first tick then meets live leases.
        procs = [
            pods.start("behind", "--drain", "--max-workers", "4", KANBAN_TEST_CLOCK_SKEW="-90")
        ]
        wait_for(lambda: len(b.status().running) == 4, what="the behind host's first claims")
        procs.append(
            pods.start("ahead", "--drain", "--max-workers", "4", KANBAN_TEST_CLOCK_SKEW="90")
        )
        for proc in procs:
            out, _ = proc.communicate(timeout=180)
            assert proc.returncode == 0, out
        hosts = set()
        for card_id in ids:
            runs = b.runs(card_id)
            # Done once, by its only run: nothing was reclaimed, nothing crashed, no retry.
            assert [r.outcome for r in runs] == ["done"], (card_id, runs)
            hosts.add(runs[0].host)
        assert hosts == {"ahead", "behind"}, f"both hosts ran cards: {hosts}"
        with b.engine.connect() as conn:
            claims = conn.execute(
                sa.text("SELECT card_id, count(*) FROM events WHERE kind = 'claimed' GROUP BY 1")
            ).all()
            spans = conn.execute(
                sa.text("SELECT card_id, claimed_at, ended_at FROM runs ORDER BY card_id, id")
            ).all()
            offsets = dict(
                conn.execute(sa.text("SELECT host, clock_offset_s FROM dispatchers")).all()
            )
        assert {n for _, n in claims} == {1} and len(claims) == len(ids)
        for _card, group in itertools.groupby(spans, key=lambda r: r.card_id):
            rows = list(group)
            for a, nxt in itertools.pairwise(rows):
                assert a.ended_at <= nxt.claimed_at, "two live agents of one card"
        # Each dispatcher recorded how far its clock is from the database's.
        assert abs(offsets["ahead"] - 90) < 2 and abs(offsets["behind"] + 90) < 2, offsets


def test_a_sqlite_board_opened_after_a_postgresql_one_runs_on_this_hosts_clock(
    shared_postgres_url: str, repo: Path
) -> None:
    """One process, two boards (tests, scripts): the server's reading of the first board
    must not become the second board's time."""
    import kanban

    with kanban.open_board(shared_postgres_url):
        assert clock.board_clock.reading is not None
    with kanban.open_board(repo / ".kanban" / "board.db"):
        assert clock.board_clock.reading is None  # SQLite: the local clock
