"""Is a dispatcher alive? On its own host only while its process is (pid and start time);
Ctrl-C marks it stopped. Real `kanban dispatch` processes and real signals, both backends."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import kanban
from kanban import board as verbs
from kanban import clock, why
from kanban.testing import board_in, kanban_process, wait_for


@pytest.fixture
def board(repo: Path, repo_db: str) -> Iterator[kanban.Board]:
    b = board_in(repo, db=repo_db)
    yield b
    b.close()


@pytest.fixture
def dispatcher(board: kanban.Board) -> Iterator[subprocess.Popen[str]]:
    assert board.settings.repo is not None
    proc = kanban_process(
        board.settings.repo, "dispatch", "--interval", "30s", env={"KANBAN_DB": board.url}
    )
    wait_for(lambda: why.dispatcher_liveness(board, clock.now())[0], what="dispatcher alive")
    yield proc
    if proc.poll() is None:
        proc.kill()
    if proc.stdout is not None and not proc.stdout.closed:
        proc.communicate()
    proc.wait()


@pytest.mark.slow
def test_a_killed_dispatcher_is_not_alive_the_moment_its_process_is_gone(
    board: kanban.Board, dispatcher: subprocess.Popen[str]
) -> None:
    dispatcher.kill()  # SIGKILL: no chance to say it stopped
    dispatcher.communicate()
    alive, text = why.dispatcher_liveness(board, clock.now())
    assert not alive
    assert f"pid {dispatcher.pid} is gone" in text and "start `kanban dispatch`" in text


@pytest.mark.slow
def test_ctrl_c_marks_the_dispatcher_stopped(
    board: kanban.Board, dispatcher: subprocess.Popen[str]
) -> None:
    dispatcher.send_signal(signal.SIGINT)
    out, _ = dispatcher.communicate(timeout=30)
    assert dispatcher.returncode == 0, out
    (row,) = board.tx.read(verbs.list_dispatchers)
    assert row["stopped_at"] is not None
    alive, text = why.dispatcher_liveness(board, clock.now())
    assert not alive and "stopped" in text


def test_a_reused_pid_is_not_the_dispatcher(board: kanban.Board) -> None:
    """Our own pid, but a start time that is not ours: another process has that pid now."""
    now = clock.now()

    def beat(name: str, started: dt.datetime) -> None:
        board.tx.write(
            lambda c: verbs.dispatchers.beat(
                c,
                name=name,
                host=board.settings.host_id,
                pid=os.getpid(),
                started_at=started,
                now=now,
                interval=60,
                version="test",
            )
        )

    beat("here:old", now - dt.timedelta(days=400))
    assert why.dispatcher_liveness(board, now) == (
        False,
        "no dispatcher is running: the last one (here:old) exited (pid "
        f"{os.getpid()} is gone) after ticking 0.0s ago; start `kanban dispatch`",
    )
    import psutil

    mine = dt.datetime.fromtimestamp(psutil.Process().create_time(), dt.UTC)
    beat("here:live", mine)
    assert why.dispatcher_liveness(board, now)[0]


def test_other_hosts_and_once_dispatchers_are_judged_by_their_heartbeat(
    board: kanban.Board,
) -> None:
    now = clock.now()
    for name, host in (("elsewhere:7", "elsewhere"), (f"{board.settings.host_id}:once", None)):
        board.tx.write(
            lambda c, name=name, host=host: verbs.dispatchers.beat(
                c,
                name=name,
                host=host or board.settings.host_id,
                pid=2**22 + 7,  # no such process here
                started_at=now,
                now=now,
                interval=60,
                version="test",
            )
        )
        assert why.dispatcher_liveness(board, now)[0], name
        board.tx.write(lambda c, name=name: verbs.dispatchers.stopped(c, name=name, now=now))
