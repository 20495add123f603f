"""Supervisors forked by the dispatcher's fork server (kanban.forkserver): used when it is
there, a fresh Python when it is not, detached from the dispatcher and the fork server, and
with nothing of the dispatcher's environment in theirs."""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from kanban import dispatcher, forkserver, processes
from kanban.testing import (
    board_in,
    drain,
    kanban_process,
    kill_run_processes,
    pid_alive,
    wait_for,
    write_profile,
)

pytestmark = pytest.mark.slow

# The agent writes what it sees of its supervisor (its parent) and waits for GO (if named).
LOOK = (
    "import json, os, pathlib, sys, time, psutil\n"
    "p = psutil.Process(os.getppid())\n"
    "go = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else None\n"
    "json.dump({'pid': p.pid, 'cmd': p.cmdline(), 'session': os.getsid(p.pid),"
    " 'environ': pathlib.Path(f'/proc/{p.pid}/environ').read_bytes().decode(errors='replace')"
    " if os.geteuid() == 0 else None}, open(sys.argv[1], 'w'))\n"
    "while go is not None and not go.exists(): time.sleep(0.05)\n"
)


def _look(repo: Path, report: Path, go: Path | None = None) -> None:
    script = report.with_suffix(".py")
    script.write_text(LOOK)
    argv = ["{python}", str(script), str(report), *([str(go)] if go else [])]
    write_profile(
        repo,
        "look",
        f'command = {json.dumps(argv)}\nworkspace = "none"\nenv_allow = ["PATH", "HOME"]\n',
    )


def test_the_dispatcher_forks_supervisors_through_its_fork_server(
    repo: Path, tmp_path: Path
) -> None:
    report = tmp_path / "look.json"
    _look(repo, report)
    with board_in(repo) as b:
        card = b.add("look at my supervisor", profile="look")
    drain(repo, env={"DISPATCHER_SECRET": "do-not-leak"})
    seen = json.loads(report.read_text())
    assert "kanban.forkserver" in " ".join(seen["cmd"]), seen["cmd"]  # a fork, not a fresh one
    assert seen["session"] == seen["pid"], "the supervisor leads a session of its own"
    if seen["environ"] is not None:  # root reads even a non-dumpable process's environ
        for secret in ("DISPATCHER_SECRET", "KANBAN_DB=", "KANBAN_TOKEN="):
            assert secret not in seen["environ"]
    with board_in(repo) as b:
        assert b.get(card.id).status == "done"
        run = b.runs(card.id)[-1]
        assert run.supervisor_pid == seen["pid"] and run.supervisor_started


def test_a_dead_fork_server_means_a_fresh_supervisor_and_no_lost_claim(
    repo: Path, tmp_path: Path
) -> None:
    report = tmp_path / "look.json"
    _look(repo, report)
    spawner = forkserver.ForkSpawner()
    with board_in(repo) as b:
        d = dispatcher.Dispatcher(b, spawner=spawner)
        spawner.warm(cwd=repo, log=b.settings.log_dir / "supervisors.log")
        server = spawner.server_pid
        assert server is not None
        os.kill(server, signal.SIGKILL)
        wait_for(lambda: not pid_alive(server), what="the fork server to die")
        card = b.add("start me anyway", profile="look")
        try:
            assert d.tick().claimed == [card.id]
            wait_for(lambda: b.get(card.id).status == "done", what="the card to finish")
            seen = json.loads(report.read_text())
            assert "kanban.supervisor" in " ".join(seen["cmd"]), "a fresh Python instead"
            assert (spawner.forked, spawner.fresh) == (0, 1)
            # The next one is forked again, by a new fork server.
            report.unlink()
            second = b.add("and me", profile="look")
            wait_for(lambda: d.tick().claimed == [second.id], what="the second claim")
            wait_for(lambda: b.get(second.id).status == "done", what="the second card")
            seen = json.loads(report.read_text())
            assert "kanban.forkserver" in " ".join(seen["cmd"])
            assert (spawner.forked, spawner.fresh) == (1, 1)
            assert spawner.server_pid not in (None, server)
        finally:
            spawner.close()
            kill_run_processes(b)
            for child in d.children.values():
                child.wait(timeout=30)


def test_without_the_setting_supervisors_start_as_a_fresh_python(repo: Path) -> None:
    with board_in(repo, fork_server="false") as b:
        assert isinstance(dispatcher.Dispatcher(b).spawner, processes.RealSpawner)
    with board_in(repo) as b:
        assert isinstance(dispatcher.Dispatcher(b).spawner, forkserver.ForkSpawner)


def test_a_forked_supervisor_outlives_the_dispatcher_and_its_fork_server(
    repo: Path, tmp_path: Path
) -> None:
    report, go = tmp_path / "look.json", tmp_path / "go"
    _look(repo, report, go)
    with board_in(repo) as b:
        card = b.add("outlive them", profile="look")
        proc = kanban_process(repo, "dispatch", env={"DISPATCHER_SECRET": "do-not-leak"})
        try:
            wait_for(report.exists, what="the agent to start")
            wait_for(lambda: report.read_text().endswith("}"), what="the agent's report")
            seen = json.loads(report.read_text())
            supervisor = psutil.Process(seen["pid"])
            server = supervisor.ppid()
            assert "kanban.forkserver" in " ".join(psutil.Process(server).cmdline())
            proc.kill()  # SIGKILL: no goodbye to anyone
            proc.communicate()
            wait_for(lambda: not pid_alive(server), what="the fork server to follow it")
            assert pid_alive(supervisor.pid), "the supervisor lives on"
            go.touch()  # the agent exits 0; its supervisor alone records the outcome
            wait_for(lambda: b.get(card.id).status == "done", what="the card to finish")
            wait_for(lambda: not pid_alive(supervisor.pid), what="the supervisor to exit")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
            kill_run_processes(b)


def test_a_forked_supervisor_that_fails_says_so_with_its_exit_code(
    repo: Path, tmp_path: Path
) -> None:
    """A supervisor forked with a run that is not there exits 2 (argparse) before checking in;
    the fork server reaps it and hands its exit code to the dispatcher's handle."""
    spawner = forkserver.ForkSpawner()
    log = tmp_path / "supervisors.log"
    argv = [sys.executable, "-m", "kanban.supervisor", "--card", "nope"]
    try:
        child = spawner.start(argv, cwd=repo, env={"KANBAN_TOKEN": "t"}, log=log)
        assert spawner.forked == 1
        assert child.wait(timeout=30) == 2
        assert "--card: invalid int value" in log.read_text()
    finally:
        spawner.close()


def test_a_spawner_dropped_without_close_lets_its_fork_server_go(tmp_path: Path) -> None:
    spawner = forkserver.ForkSpawner()
    spawner.warm(cwd=tmp_path, log=tmp_path / "supervisors.log")
    server = spawner.server_pid
    assert server is not None and pid_alive(server)
    del spawner
    gc.collect()
    assert not pid_alive(server)  # closed, waited for (or killed), and reaped
