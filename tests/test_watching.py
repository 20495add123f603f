"""The watcher with real processes writing to a real log: exits, stalls behind noise, live
auth errors, cost caps reached mid-run, timeouts. It never signals the agent itself."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import kanban
from kanban import outcomes, processes, profiles, watching

DATA = Path(__file__).parent / "data"
Start = Callable[..., tuple[watching.Watcher, subprocess.Popen[bytes]]]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Start `python -c CODE` writing into a log, and a watcher over it."""
    started: list[subprocess.Popen[bytes]] = []

    def run(
        code: str | list[str],
        *,
        timeout: float = 60.0,
        caps: tuple[outcomes.Cap, ...] = (),
        **profile: object,
    ) -> tuple[watching.Watcher, subprocess.Popen[bytes]]:
        log = tmp_path / f"agent-{len(started)}.log"
        log.write_bytes(b"[kanban] a note from the supervisor before the agent starts\n")
        argv = [sys.executable, "-c", code] if isinstance(code, str) else code
        with log.open("ab") as out:
            agent = processes.spawn(argv, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, stdout=out)
        started.append(agent)
        watcher = watching.Watcher(
            agent,
            profile=profiles.Profile(name="p", command=("p",), **profile),  # type: ignore[arg-type]
            log_path=log,
            start_offset=0,
            timeout=timeout,
            caps=caps,
        )
        return watcher, agent

    yield run
    for agent in started:
        if agent.poll() is None:
            processes.kill_group(processes.Identity.of(agent.pid), grace=0)
            agent.wait()


PRINT_FOREVER = (
    "import time, sys\n"
    "print('starting', flush=True)\n"
    "while True:\n"
    "    print({line!r}, flush=True)\n"
    "    time.sleep(0.05)\n"
)


def test_an_agent_that_exits_is_exited_with_its_code_and_all_its_output_read(
    start: Start,
) -> None:
    watcher, _ = start(
        "import sys; print('one'); sys.stdout.write('last, no newline'); sys.exit(3)"
    )
    assert watcher.watch() == watching.Ended("exited", returncode=3)
    assert watcher.report().summary == "last, no newline"


def test_only_noise_for_the_idle_timeout_is_a_stall(start: Start) -> None:
    watcher, agent = start(
        PRINT_FOREVER.format(line="ERROR: Reconnecting... waiting for network"),
        idle_timeout=0.5,
        noise_patterns=("Reconnecting\\.\\.\\.",),
    )
    ended = watcher.watch()
    assert ended.why == "stalled"
    assert ended.detail == "ERROR: Reconnecting... waiting for network"
    assert agent.poll() is None  # still running: stopping it is the supervisor's call


def test_the_same_lines_without_a_noise_pattern_are_progress(start: Start) -> None:
    watcher, _ = start(
        "import time\nfor i in range(15):\n    print('Reconnecting...', flush=True)\n"
        "    time.sleep(0.05)\n",
        idle_timeout=3.0,
    )
    assert watcher.watch().why == "exited"


def test_a_long_line_still_being_written_is_progress(start: Start) -> None:
    watcher, _ = start(
        "import sys, time\nfor i in range(15):\n    sys.stdout.write('x'); sys.stdout.flush()\n"
        "    time.sleep(0.05)\n",
        idle_timeout=3.0,
    )
    assert watcher.watch().why == "exited"
    assert watcher.report().summary == "x" * 15


def test_the_supervisors_own_notes_are_not_the_agents_output(start: Start) -> None:
    watcher, _ = start("print('done')")
    watcher.watch()
    assert watcher.reader.messages() == ["done"]


def test_an_auth_line_stops_an_agent_that_does_not_exit_by_itself(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watching, "AUTH_GRACE", 0.2)
    watcher, agent = start(
        "import time\nprint('No LLM model was specified and no API keys were provided.', "
        "flush=True)\nprint('Waiting up to 5 minutes for you to finish in the browser...', "
        "flush=True)\ntime.sleep(300)\n",
        auth_patterns=("^No LLM model was specified",),
    )
    ended = watcher.watch()
    assert ended == watching.Ended(
        "auth", detail="No LLM model was specified and no API keys were provided."
    )
    assert agent.poll() is None


def test_an_agent_that_exits_after_its_auth_line_keeps_its_last_words(start: Start) -> None:
    watcher, _ = start(
        "import sys; print('Not logged in · Please run /login'); sys.exit(1)",
        auth_patterns=("^Not logged in",),
    )
    assert watcher.watch() == watching.Ended("exited", returncode=1)
    assert watcher.auth_line == "Not logged in · Please run /login"


def test_a_cost_cap_stops_the_run_when_the_agent_reports_the_cost(start: Start) -> None:
    transcript = DATA / "claude-stream-json-success.jsonl"
    replay = [sys.executable, "-m", "kanban.testing", "replay", str(transcript), "--hold", "300"]
    watcher, agent = start(
        replay,
        output="claude-stream-json",
        caps=(outcomes.Cap("card 7's cap", 0.05, spent=0.0),),
    )
    ended = watcher.watch()
    assert ended == watching.Ended(
        "cost_cap", detail="cost cap reached: $0.0734 of $0.05 (card 7's cap)"
    )
    assert agent.poll() is None
    assert watcher.report().tokens_out == 519


def test_tokens_at_the_profiles_prices_stop_an_agent_that_reports_no_cost(start: Start) -> None:
    event = '{"type":"turn.completed","usage":{"input_tokens":800000,"output_tokens":50000}}'
    watcher, _ = start(
        f"import time\nprint({event!r}, flush=True)\ntime.sleep(300)\n",
        output="codex-json",
        token_prices=(1.25, 10.0),
        caps=(outcomes.Cap("card 2's cap", 1.0, spent=0.25),),
    )
    ended = watcher.watch()
    assert ended.why == "cost_cap"
    assert ended.detail == "cost cap reached: $1.75 of $1.00 (card 2's cap)"


def test_timeout_stopping_and_a_lost_lease_end_the_watch(start: Start) -> None:
    watcher, _ = start("import time; time.sleep(300)", timeout=0.3)
    assert watcher.watch().why == "timeout"
    stopping, lost = threading.Event(), threading.Event()
    for event, why in ((stopping, "stopping"), (lost, "lease_lost")):
        watcher, _ = start("import time; time.sleep(300)")
        watcher.stopping, watcher.lease_lost = stopping, lost
        event.set()
        assert watcher.watch().why == why
        event.clear()


def test_log_tail_returns_complete_lines_and_keeps_the_partial_one(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"skipped\n")
    tail = watching.LogTail(log, start=len(b"skipped\n"))
    assert tail.lines() == []
    with log.open("ab") as fh:
        fh.write(b"one\ntw")
    assert tail.lines() == ["one"]
    with log.open("ab") as fh:
        fh.write(b"o\nthree")
    assert tail.lines() == ["two"]
    assert tail.rest() == ["three"]
    assert tail.rest() == []


def test_a_huge_line_costs_the_tail_a_bounded_amount_and_the_cut_is_counted(
    tmp_path: Path,
) -> None:
    import tracemalloc

    from kanban.watching import LogTail

    log = tmp_path / "agent.log"
    with log.open("wb") as fh:
        for _ in range(40):
            fh.write(b"x" * (1 << 20))  # 40 MB on one line ...
        fh.write(b"the end\nnext line\n")
    tail = LogTail(log, 0)
    tracemalloc.start()
    lines = tail.rest()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 << 20, f"{peak:,} bytes to read a 40 MB line"
    assert lines[0].endswith("the end") and len(lines[0]) == tail.max_line  # the tail is kept
    assert lines[1] == "next line"
    assert tail.cut == 40 * (1 << 20) + len("the end") - tail.max_line


def test_a_heartbeat_that_cannot_reach_the_board_for_a_ttl_gives_the_lease_up(
    tmp_path: Path,
) -> None:
    """The clock is injected: no sleeping. The board is real and really unreachable (a
    PostgreSQL URL on a port nobody listens on)."""
    import sqlalchemy as sa

    from kanban import api, settings
    from kanban.watching import Heartbeat

    config = settings.load({"db": str(tmp_path / "b.db")}, cwd=tmp_path, env={})
    engine = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=1")
    away = api.Board(engine, config)
    now = [100.0]
    beat = Heartbeat(away, 1, "token", 1.0, ttl=5.0, clock=lambda: now[0])
    beat.beat()
    assert not beat.lost.is_set(), "one failed beat is not a lost lease"
    now[0] += 4.9
    beat.beat()
    assert not beat.lost.is_set()
    now[0] += 0.2  # 5.1 s since the last beat that landed: another host may take the card
    beat.beat()
    assert beat.lost.is_set() and beat.unreachable
    engine.dispose()


def test_a_heartbeat_refused_by_the_board_loses_the_lease_at_once(board: kanban.Board) -> None:
    from kanban.watching import Heartbeat

    card = board.add("x")
    claim = board.claim(card_id=card.id)
    assert claim is not None
    beat = Heartbeat(board, card.id, claim.token, 1.0, ttl=5.0, clock=lambda: 0.0)
    beat.beat()
    assert not beat.lost.is_set()
    board.cancel(card.id)
    beat.beat()
    assert beat.lost.is_set() and not beat.unreachable
