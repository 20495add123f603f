"""The run's log is bounded on disk (kanban.agentlog): a real process floods it, the file
never passes `max_log_bytes`, its head and tail are kept and one line says what was cut.
The supervisor test runs the supervisor in this process over a real board and a real agent."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import kanban
from kanban import agentlog, processes, supervisor, watching
from kanban.testing import board_in, write_profile

LIMIT = 1 << 20  # 1 MiB
FLOOD = (
    "import sys\n"
    "out = sys.stdout.buffer\n"
    "out.write(b'first words\\n')\n"
    "block = b'x' * (1 << 20)\n"
    "for _ in range({mib}):\n"
    "    out.write(block)\n"
    "out.write(b'the end\\nlast line\\n')\n"
    "out.flush()\n"
)


def _biggest_while(path: Path, done: threading.Event, seen: list[int]) -> None:
    while not done.wait(0.005):
        with contextlib.suppress(OSError):
            seen.append(os.stat(path).st_size)


def test_a_100_mb_line_through_the_pump_leaves_a_bounded_log_with_its_tail(
    tmp_path: Path,
) -> None:
    import tracemalloc

    path = tmp_path / "card-1-run-1.log"
    log = agentlog.AgentLog(path, max_bytes=LIMIT)
    log.write(b"[kanban] header\n")
    start = log.written
    agent = processes.spawn(
        [sys.executable, "-c", FLOOD.format(mib=100)],
        cwd=tmp_path,
        env={"PATH": os.defpath},
        stdout=subprocess.PIPE,
    )
    assert agent.stdout is not None
    pump = agentlog.Pump(os.dup(agent.stdout.fileno()), log)
    agent.stdout.close()
    sizes: list[int] = []
    done = threading.Event()
    sampler = threading.Thread(target=_biggest_while, args=(path, done, sizes))
    tracemalloc.start()
    sampler.start()
    pump.start()
    assert agent.wait(timeout=120) == 0
    pump.drain()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    done.set()
    sampler.join()
    pump.stop()

    flood = 100 * (1 << 20)
    total = len(b"first words\n") + flood + len(b"the end\nlast line\n")
    assert log.written == start + total  # every byte went through ...
    assert max([*sizes, path.stat().st_size]) <= LIMIT  # ... and the file never passed the limit
    assert peak < 8 << 20, f"{peak:,} bytes of memory to pump 100 MB"
    data = path.read_bytes()
    assert data.startswith(b"[kanban] header\nfirst words\nxxx")  # the head is kept
    assert data.endswith(b"xxxthe end\nlast line\n")  # ... and the tail
    cut_line = f"\n[kanban] {log.cut:,} bytes of output cut here".encode()
    assert data.count(cut_line) == 1, data[log.head : log.head + 200]
    # What was kept and what was cut add up to what was written.
    marker_len = data.index(b"\n", data.index(cut_line) + 1) + 1 - log.head
    assert log.head + log.cut + (len(data) - log.head - marker_len) == log.written
    assert len(data) - log.head - marker_len >= (LIMIT - log.head) // 2 - 256  # a real tail
    log.close()


def test_the_watcher_reads_a_cut_log_by_its_logical_offsets(tmp_path: Path) -> None:
    """Lines cut before the watcher read them are skipped and counted, never misread."""
    log = agentlog.AgentLog(tmp_path / "log", max_bytes=64 << 10)
    tail = watching.LogTail(log.path, 0, log=log, chunk=4096)
    log.write(b"one\ntwo\n")
    assert tail.lines() == ["one", "two"]
    for i in range(20_000):
        log.write(f"line {i}\n".encode())
    lines = tail.rest()
    assert log.cut > 0
    assert lines[-1] == "line 19999"
    numbers = [int(line.split()[1]) for line in lines]  # whole lines only, none broken
    assert numbers == sorted(set(numbers))
    gap = next(i for i in range(len(numbers) - 1) if numbers[i + 1] != numbers[i] + 1)
    assert numbers[gap + 1 :] == list(range(numbers[gap + 1], 20_000))  # the tail, unbroken
    assert tail.skipped > 0


def test_every_byte_kept_is_the_byte_written_there(tmp_path: Path) -> None:
    """Random writes of a known stream: the file is its head, the cut line and its tail."""
    rng = random.Random(12)
    stream = bytes(rng.randrange(256) for _ in range(1 << 20)).replace(b"\n", b".")
    log = agentlog.AgentLog(tmp_path / "log", max_bytes=64 << 10)
    at = 0
    while at < len(stream):
        size = rng.choice([1, 7, 100, 4096, 30_000, 70_000])
        log.write(stream[at : at + size])
        at += size
        assert log.size() <= log.max_bytes
    data = log.path.read_bytes()
    head, rest = data[: log.head], data[log.head :]
    marker, tail = rest.split(b"\n", 2)[1], rest.split(b"\n", 2)[2]
    assert head == stream[: log.head]
    assert marker.startswith(f"[kanban] {log.cut:,} bytes of output cut here".encode())
    assert tail == stream[log.head + log.cut :]
    got, _, skipped = log.read(log.head, 10)
    assert skipped == log.cut and got == stream[log.head + log.cut : log.head + log.cut + 10]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0", "out of range: give 64KiB to 1TiB"),
        ("-1MiB", "is not a size"),
        ("1KB", "out of range"),
        ("2TiB", "out of range"),
        ("lots", "is not a size"),
    ],
)
def test_max_log_bytes_out_of_range_is_refused(tmp_path: Path, value: str, says: str) -> None:
    from kanban import settings

    state = tmp_path / ".kanban"
    state.mkdir()
    (state / "config.toml").write_text(f'max_log_bytes = "{value}"\n')
    with pytest.raises(kanban.UsageError) as caught:
        settings.load(cwd=tmp_path)
    assert says in caught.value.message, caught.value.message
    with pytest.raises(kanban.UsageError):
        settings.load({"max_log_bytes": value}, cwd=tmp_path, env={})


def test_max_log_bytes_takes_sizes(tmp_path: Path) -> None:
    from kanban import settings

    (tmp_path / ".kanban").mkdir()
    load = settings.load
    assert load(cwd=tmp_path, env={}).max_log_bytes == 16 << 20
    assert load({"max_log_bytes": "16MiB"}, cwd=tmp_path, env={}).max_log_bytes == 16 << 20
    assert load({"max_log_bytes": "100 MB"}, cwd=tmp_path, env={}).max_log_bytes == 100 * 10**6
    assert load({"max_log_bytes": 65536}, cwd=tmp_path, env={}).max_log_bytes == 65536
    assert load(cwd=tmp_path, env={"KANBAN_MAX_LOG_BYTES": "1MiB"}).max_log_bytes == 1 << 20


def test_a_supervised_agent_flooding_its_log_leaves_it_bounded_and_says_so(
    repo: Path, repo_db: str
) -> None:
    """The supervisor pipes the agent into the bounded log: 100 MB on one line, a 1 MiB
    limit; the run is done, its log under the limit with the agent's last words and the
    supervisor's note of the cut."""
    script = repo / "flood.py"
    script.write_text(FLOOD.format(mib=100))
    write_profile(
        repo,
        "flood",
        f'command = ["{sys.executable}", "{script}"]\nworkspace = "none"\nmax_attempts = 1\n',
    )
    with board_in(repo, db=repo_db, max_log_bytes="1MiB") as b:
        card = b.add("flood the log", profile="flood")
        claim = b.claim(card_id=card.id)
        assert claim is not None
        sup = supervisor.Supervisor(b, card_id=card.id, run_id=claim.run_id, token=claim.token)
        assert sup.run() == 0
        (run,) = b.runs(card.id)
    assert run.outcome == "done", run.error
    assert run.log_path is not None
    log = Path(run.log_path)
    size = log.stat().st_size
    assert size <= LIMIT, size  # the supervisor's own notes go through the same bound
    text = log.read_bytes().decode(errors="replace")
    assert "first words" in text[: LIMIT // 4]
    assert text.endswith("xxxthe end\nlast line\n") or "xxxthe end\nlast line\n" in text
    assert "bytes of output cut here" in text
    assert "bytes of the agent's output were cut from the middle of this log" in text
