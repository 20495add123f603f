"""Faults of the database under a drain: a finished agent is recorded as finished once the
database answers again (kanban.retrying names what is transient; the supervisor retries its
fenced writes patiently and says so in the run's log)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from kanban.testing import board_in, kanban_process, use_board, wait_for, write_profile

from .conftest import Chaos

pytestmark = pytest.mark.chaos
PG_ONLY = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


def _schema(url: str) -> str:
    return str(sa.engine.make_url(url).query["application_name"])


def _admin(url: str) -> sa.Engine:
    base = sa.engine.make_url(url).difference_update_query(["options", "application_name"])
    return sa.create_engine(base, poolclass=sa.pool.NullPool)


def _no_run_lost(chaos: Chaos) -> None:
    """Every card done at its first run: no finished work was recorded as crashed."""
    chaos.check()
    runs = [r for c in chaos.board.cards() for r in chaos.board.runs(c.id)]
    lost = [(r.card_id, r.id, r.outcome, r.error) for r in runs if r.outcome != "done"]
    assert lost == [], lost


@PG_ONLY
def test_postgres_backends_terminated_every_0_2s_lose_no_finished_run(chaos: Chaos) -> None:
    for i in range(24):
        chaos.board.add(f"card {i}", profile="quick")
    admin = _admin(chaos.url)
    stop = threading.Event()
    killed = []

    def terminate() -> None:
        # Every 0.2 s until half the cards are done (or 60 s passed): the storm covers claims,
        # starts, heartbeats and ends; then the drain finishes in peace, however loaded the
        # machine is (the promise is about what the storm does, not how fast we drain in it).
        deadline = time.monotonic() + 60
        while not stop.wait(0.2) and time.monotonic() < deadline:
            with admin.begin() as conn:
                hit = conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": _schema(chaos.url)},
                ).all()
                done = conn.exec_driver_sql(
                    f"SELECT count(*) FROM {_schema(chaos.url)}.cards WHERE status = 'done'"
                ).scalar_one()
            killed.append(len(hit))
            if done >= 12:
                return

    killer = threading.Thread(target=terminate)
    chaos.dispatcher()
    killer.start()
    try:
        killer.join()
        chaos.wait_drained()
    finally:
        stop.set()
        killer.join()
        admin.dispose()
    chaos.stop()
    assert sum(killed) > 12, f"too few backends were terminated to mean anything: {killed}"
    _no_run_lost(chaos)


@PG_ONLY
def test_a_statement_timeout_under_a_long_lock_loses_no_finished_run(
    chaos: Chaos, repo: Path
) -> None:
    url = sa.engine.make_url(chaos.url)
    options = f"{url.query['options']} -cstatement_timeout=200"
    use_board(repo, url.update_query_dict({"options": options}).render_as_string(False))
    for i in range(8):
        chaos.board.add(f"card {i}", profile="quick")
    chaos.dispatcher()
    wait_for(lambda: chaos.live_runs(), what="a run to start")
    admin = _admin(chaos.url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"SET search_path = {_schema(chaos.url)}")
        conn.exec_driver_sql("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
        time.sleep(3.0)  # every write of a run times out meanwhile (within the lease TTL)
    admin.dispose()
    chaos.wait_drained()
    chaos.stop()
    _no_run_lost(chaos)


SLOW = """
description = "works two seconds and succeeds"
command = ["sleep", "2"]
workspace = "none"
concurrency = 4
max_attempts = 3
timeout = "60s"
"""


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs for the board, with its own tmpfs for the logs (so the run's log can say
    what the supervisor waits for while the board's disk is full)."""
    state = tmp_path / "state"
    state.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(state)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    (state / "logs").mkdir(mode=0o700)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(state / "logs")], check=True
    )
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state / "logs")], check=False)
        subprocess.run(["umount", "-l", str(state)], check=False)


def test_the_boards_disk_full_loses_no_finished_run(repo: Path, full_disk: Path) -> None:
    write_profile(repo, "slow", SLOW)
    url = str(full_disk / "board.db")
    kanban_process(repo, "--db", url, "init").communicate(timeout=60)
    board = board_in(repo, db=url, lease_ttl="30")
    env = {"KANBAN_DB": url, "KANBAN_LEASE_TTL": "30"}
    proc = kanban_process(repo, "dispatch", "-q", env=env, stdout=subprocess.DEVNULL)
    try:
        cards = [board.add(f"card {i}", profile="slow").id for i in range(3)]
        wait_for(lambda: len([r for r in board.status().running if r.pid]) == 3, what="agents")
        filler = full_disk / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        logs = [full_disk / "logs" / f"card-{c}-run-{board.runs(c)[0].id}.log" for c in cards]

        def waiting() -> bool:
            return all("the database did not answer" in p.read_text() for p in logs)

        wait_for(waiting, timeout=60, what="every supervisor to say it waits for the board")
        assert all(r.outcome is None for c in cards for r in board.runs(c))
        filler.unlink()
        wait_for(
            lambda: all(board.get(c).status == "done" for c in cards),
            timeout=60,
            what="the finished runs to be recorded",
        )
        for card_id in cards:
            assert [r.outcome for r in board.runs(card_id)] == ["done"]
        text = logs[0].read_text()
        assert "database or disk is full" in text, text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        board.close()
