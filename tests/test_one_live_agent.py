"""One live agent per card: a card's next run starts only when no process of an earlier run
can still be alive, confirmed by identity; a supervisor killed at any phase of its life
leaves no agent behind, and the run's error says what really happened."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import kanban
from kanban import board, clock, liveness
from kanban.board import releases
from kanban.testing import (
    board_in,
    die_at,
    git,
    kanban_process,
    kill_run_processes,
    wait_for,
    write_profile,
)


def _claim(b: kanban.Board, *, host: str, now: dt.datetime) -> kanban.views.Claim | None:  # type: ignore[name-defined]
    return b.tx.write(lambda c: board.claim(c, now=now, host=host, ttl=5.0))


def _check_in(b: kanban.Board, claim: kanban.views.Claim) -> None:  # type: ignore[name-defined]
    b.tx.write(
        lambda c: board.record_start(
            c,
            card_id=claim.card_id,
            token=claim.token,
            now=clock.now(),
            supervisor_pid=1,
            supervisor_started=1.0,
        )
    )


def test_an_ended_run_with_a_supervisor_holds_back_the_next_claim_until_released(
    board: kanban.Board,
) -> None:
    card = board.add("one", profile="p")
    now = clock.now()
    first = _claim(board, host="h1", now=now)
    assert first is not None
    _check_in(board, first)
    board.cancel(card.id)
    board.retry(card.id)
    assert _claim(board, host="h1", now=now) is None, "claimed while run 1 may be alive"
    # Another host cannot confirm h1's processes: it waits one TTL past the lease's expiry.
    assert _claim(board, host="h2", now=first.lease_expires_at) is None
    assert board.tx.write(
        lambda c: releases.release_run(c, run_id=first.run_id, now=now, how="test")
    )
    second = _claim(board, host="h1", now=now)
    assert second is not None and second.attempt == 2


def test_another_hosts_run_is_taken_as_released_one_ttl_after_its_lease_expired(
    board: kanban.Board,
) -> None:
    card = board.add("one", profile="p")
    first = _claim(board, host="h1", now=clock.now())
    assert first is not None
    _check_in(board, first)
    board.cancel(card.id)
    board.retry(card.id)
    later = first.lease_expires_at + dt.timedelta(seconds=5.1)
    assert _claim(board, host="h2", now=later) is not None


def test_a_run_that_ended_before_its_supervisor_checked_in_never_holds_the_card(
    board: kanban.Board,
) -> None:
    card = board.add("one", profile="p")
    assert _claim(board, host="h1", now=clock.now()) is not None
    board.cancel(card.id)
    board.retry(card.id)
    assert _claim(board, host="h1", now=clock.now()) is not None


# ---------------------------------------------------------------- real processes

STUBBORN = """
description = "writes its own file, then takes two seconds to stop when asked"
command = ["sh", "-c", '''
echo "start $KANBAN_RUN_ID $(date +%s.%N)" >> "$AGENTS_LOG"
echo "run $KANBAN_RUN_ID" > "file-$KANBAN_RUN_ID.txt"
trap 'sleep 2; echo "end $KANBAN_RUN_ID $(date +%s.%N)" >> "$AGENTS_LOG"; exit 1' TERM
while :; do sleep 0.1; done
''']
workspace = "worktree"
concurrency = 2
max_attempts = 5
timeout = "60s"
env_allow = ["PATH"]
env = {{ AGENTS_LOG = "{log}" }}
"""


@pytest.fixture
def live(repo: Path, repo_db: str) -> Iterator[tuple[kanban.Board, list[subprocess.Popen[str]]]]:
    b = board_in(repo, db=repo_db)
    procs: list[subprocess.Popen[str]] = []
    yield b, procs
    for proc in procs:
        proc.kill()
        proc.wait()
    kill_run_processes(b)
    b.close()


def _dispatcher(repo: Path, procs: list[subprocess.Popen[str]], **env: str) -> None:
    procs.append(
        kanban_process(
            repo, "dispatch", "--interval", "1s", "-q", env=env, stdout=subprocess.DEVNULL
        )
    )


def _agent_times(log: Path) -> dict[tuple[str, int], float]:
    times = {}
    for line in log.read_text().splitlines():
        if len(parts := line.split()) == 3:  # (a line being written is left for later)
            what, run, at = parts
            times[(what, int(run))] = float(at)
    return times


@pytest.mark.slow
@pytest.mark.parametrize(("stop", "again"), [("cancel", "retry"), ("block", "unblock")])
def test_a_running_card_stopped_and_started_again_never_has_two_agents(
    repo: Path, live: tuple[kanban.Board, list[subprocess.Popen[str]]], stop: str, again: str
) -> None:
    b, procs = live
    log = repo.parent / "agents.log"
    write_profile(repo, "stubborn", STUBBORN.format(log=log))
    card = b.add("stubborn card", profile="stubborn")
    _dispatcher(repo, procs)
    wait_for(lambda: log.exists() and "start" in log.read_text(), what="the first agent")
    if stop == "block":
        b.block(card.id, reason="a person looks at it")
    else:
        b.cancel(card.id)
    getattr(b, again)(card.id)
    wait_for(lambda: len(b.runs(card.id)) == 2 and b.runs(card.id)[1].pid, what="run 2's agent")
    first, second = b.runs(card.id)
    wait_for(lambda: ("start", second.id) in _agent_times(log), what="run 2's agent to say so")
    times = _agent_times(log)
    # The old agent took two seconds to stop; the new one started only after it was gone.
    assert times[("end", first.id)] < times[("start", second.id)], times
    # Run 1 was released before run 2's supervisor started it. (Not before `claimed_at`: that
    # is the claiming tick's opening time, read before the release may have landed.)
    assert second.started_at is not None
    assert first.released_at is not None and first.released_at <= second.started_at
    # The old run's leftover commit holds its own file, not the new run's.
    assert first.branch is not None
    subjects = git(repo, "log", "--format=%H %s", first.branch).splitlines()
    leftover = [line.split()[0] for line in subjects if f"run {first.id} " in line]
    assert leftover, subjects
    files = git(repo, "show", "--name-only", "--format=", leftover[0]).split()
    assert files == [f"file-{first.id}.txt"], files


PHASED = """
description = "sleeps and succeeds"
command = ["sleep", "{seconds}"]
workspace = "none"
concurrency = 8
max_attempts = 1
timeout = "60s"
"""


@pytest.mark.slow
def test_a_supervisor_killed_at_each_phase_leaves_no_agent_and_says_what_happened(
    repo: Path, live: tuple[kanban.Board, list[subprocess.Popen[str]]]
) -> None:
    b, procs = live
    write_profile(repo, "quick", PHASED.format(seconds=0.3))
    write_profile(repo, "long", PHASED.format(seconds=120))  # alive until it is stopped
    alive = {"spawned", "watching"}
    cards = {
        b.add(f"dies {phase}", profile="long" if phase in alive else "quick").id: phase
        for phase in liveness.PHASES
    }
    _dispatcher(repo, procs, **die_at(cards), KANBAN_LEASE_TTL="30")

    def settled() -> bool:
        return all(
            (runs := b.runs(cid)) and runs[0].outcome and runs[0].released_at for cid in cards
        )

    try:
        wait_for(settled, timeout=60, what="every run to end and be released")
    except TimeoutError:
        raise AssertionError(
            [(cards[c], [(r.outcome, r.released_at, r.error) for r in b.runs(c)]) for c in cards]
        ) from None
    for card_id, phase in cards.items():
        (run,) = b.runs(card_id)
        token = b.tx.read(lambda c, r=run.id: board.token_of(c, r))
        assert liveness.marked(token) == [], f"{phase}: an agent of run {run.id} is alive"
        if phase == "ended":
            assert run.outcome == "done", run
            continue
        assert run.outcome == "crashed", (phase, run)
        assert liveness.phase_text(phase) in (run.error or ""), (phase, run.error)
        if phase in alive:
            assert "was found running and stopped" in (run.error or ""), (phase, run.error)
        if phase in ("checked_in", "preparing", "spawning"):
            assert "no agent of the run was running" in (run.error or ""), (phase, run.error)


HOOKED = """
description = "never gets to run: the checkout's hook hangs"
command = ["true"]
workspace = "worktree"
max_attempts = 1
"""


def _hanging_hook(repo: Path) -> Path:
    """A checkout that hangs: kanban's git runs no hooks and none of the repository's own
    filters (docs/security.md), so the hang is a smudge filter of the user's global config
    (what a slow LFS or crypt filter installed with `--global` does), in the HOME that
    `_dispatcher(..., HOME=str(_home(repo)))` gives the dispatcher."""
    marker = repo.parent / "hook-pids"
    filter_script = repo.parent / "slow-filter"
    filter_script.write_text(f"#!/bin/sh\necho $$ >> {marker}\nexec sleep 600\n")
    filter_script.chmod(0o755)
    _home(repo).mkdir(exist_ok=True)
    (_home(repo) / ".gitconfig").write_text(
        f'[filter "slow"]\n\tsmudge = "{filter_script}"\n\tclean = cat\n'
    )
    (repo / ".gitattributes").write_text("*.slow filter=slow\n")
    (repo / "data.slow").write_text("checked out through the filter\n")
    git(repo, "add", ".gitattributes", "data.slow")
    git(repo, "commit", "-q", "-m", "a file behind a smudge filter")
    return marker


def _home(repo: Path) -> Path:
    return repo.parent / "home"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_cancel_reaches_a_card_stuck_starting_on_a_hanging_git_hook(
    repo: Path, live: tuple[kanban.Board, list[subprocess.Popen[str]]]
) -> None:
    b, procs = live
    write_profile(repo, "hooked", HOOKED)
    marker = _hanging_hook(repo)
    card = b.add("hangs in checkout", profile="hooked")
    _dispatcher(repo, procs, HOME=str(_home(repo)))
    wait_for(lambda: marker.exists() and marker.read_text().strip(), what="the hook to hang")
    hook_pid = int(marker.read_text().split()[0])
    b.cancel(card.id)
    (run,) = b.runs(card.id)
    wait_for(lambda: b.runs(card.id)[0].released_at, timeout=30, what="the run to be released")
    assert not _alive(hook_pid), "the hanging hook outlived the cancelled run"
    assert run.supervisor_pid is not None
    wait_for(lambda: not _alive(run.supervisor_pid), what="the supervisor to exit")  # type: ignore[arg-type]
    log = Path(b.settings.log_dir / f"card-{card.id}-run-{run.id}.log").read_text()
    assert "was stopped (a hook that hangs?)" in log, log


@pytest.mark.slow
def test_worktree_preparation_has_a_time_limit(
    repo: Path, live: tuple[kanban.Board, list[subprocess.Popen[str]]]
) -> None:
    b, procs = live
    write_profile(repo, "hooked", HOOKED)
    marker = _hanging_hook(repo)
    card = b.add("hangs in checkout", profile="hooked")
    _dispatcher(repo, procs, KANBAN_PREP_TIMEOUT="2s", HOME=str(_home(repo)))
    wait_for(lambda: b.get(card.id).status == "blocked", timeout=60, what="the card to block")
    (run,) = b.runs(card.id)
    assert run.outcome == "spawn_failed"
    assert "took longer than 2s (a hook that hangs?)" in (run.error or ""), run.error
    assert not _alive(int(marker.read_text().split()[0]))
