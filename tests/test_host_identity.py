"""Host identity: every run names its host; process checks apply to this host's runs only,
leases to everyone's; a dispatcher never signals another host's processes."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

import kanban
from kanban import board as verbs
from kanban import clock, dispatcher, processes, settings
from kanban.testing import board_in, pid_alive


def test_host_id_comes_from_the_environment_then_the_config_then_the_hostname(
    repo: Path,
) -> None:
    state = repo / ".kanban"
    state.mkdir()
    db = str(state / "board.db")
    assert settings.load({"db": db}, cwd=repo, env={}).host_id == socket.gethostname()
    (state / "config.toml").write_text('host_id = "build-1"\n')
    assert settings.load({"db": db}, cwd=repo, env={}).host_id == "build-1"
    env = {"KANBAN_HOST_ID": "build-2"}
    assert settings.load({"db": db}, cwd=repo, env=env).host_id == "build-2"


def test_every_run_names_its_host_and_supervisors_inherit_it(repo: Path, repo_db: str) -> None:
    with board_in(repo, db=repo_db, host_id="build-7") as b:
        card = b.add("anything")
        claim = b.claim()
        assert claim is not None
        assert b.runs(card.id)[0].host == "build-7"
        assert dispatcher.settings_env(b)["KANBAN_HOST_ID"] == "build-7"


class NoSpawner:
    def start(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        raise AssertionError("nothing should be started")


@pytest.fixture
def here(repo: Path, repo_db: str) -> Iterator[kanban.Board]:
    with board_in(repo, db=repo_db, host_id="here") as b:
        yield b


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[processes.Identity]:
    proc = processes.spawn(
        [sys.executable, "-c", "import time; time.sleep(120)"], cwd=tmp_path, env={}
    )
    yield processes.Identity.of(proc.pid)
    proc.kill()
    proc.wait()


def _run_elsewhere(
    b: kanban.Board, *, supervisor: processes.Identity, agent: processes.Identity
) -> int:
    """A card running on host `elsewhere`, whose pids happen to exist on this machine too."""
    card = b.add("remote work", profile="demo")

    def claim_there(conn: object) -> int:
        won = verbs.claim(conn, now=clock.now(), host="elsewhere", ttl=1, card_id=card.id)  # type: ignore[arg-type]
        assert won is not None
        verbs.record_start(
            conn,  # type: ignore[arg-type]
            card_id=card.id,
            token=won.token,
            now=clock.now(),
            supervisor_pid=supervisor.pid,
            supervisor_started=supervisor.started,
            pid=agent.pid,
            pid_started=agent.started,
        )
        return won.run_id

    return b.tx.write(claim_there)


def test_another_hosts_dead_looking_supervisor_is_not_ours_to_judge(
    here: kanban.Board, sleeper: processes.Identity
) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    ghost = processes.Identity(gone.pid, 1.0)  # no such process on this machine
    run_id = _run_elsewhere(here, supervisor=ghost, agent=sleeper)
    report = dispatcher.Dispatcher(here, spawner=NoSpawner()).tick()
    assert report.crashed == [] and report.reclaimed == []
    run = next(r for r in here.status().running if r.id == run_id)
    assert run.outcome is None and run.host == "elsewhere"


def test_another_hosts_expired_run_is_requeued_without_signalling_its_pids(
    here: kanban.Board, sleeper: processes.Identity
) -> None:
    run_id = _run_elsewhere(here, supervisor=sleeper, agent=sleeper)
    later = clock.now() + dt.timedelta(seconds=5)
    report = dispatcher.Dispatcher(here, spawner=NoSpawner()).tick(now=later)
    run = next(r for c in here.cards() for r in here.runs(c.id) if r.id == run_id)
    assert report.reclaimed == [run.card_id]
    assert run.outcome == "reclaimed" and "host elsewhere" in (run.error or "")
    assert pid_alive(sleeper.pid), "a dispatcher signalled a process of another host's run"
