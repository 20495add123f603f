"""The supervisor's branches as a table: each row a fake agent (kanban.testing.FakeRunner) on
an injected clock, a real board, the supervisor's real code from check-in to the recorded
outcome. No real agent process and no sleeping: a timeout of an hour passes in no time."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import kanban
from kanban import errors, supervisor
from kanban.testing import (
    FakeAgent,
    FakeClock,
    FakeRunner,
    FakeWorkspaces,
    board_in,
    write_profile,
)

PROFILE = """
description = "a fake agent (kanban.testing.FakeRunner)"
command = ["fake-agent", "{card_id}"]
workspace = "none"
output = "codex-json"
timeout = "1h"
max_attempts = 3
token_prices = { input = 1.25, output = 10.0 }
"""
USAGE = '{"type":"turn.completed","usage":{"input_tokens":800000,"output_tokens":50000}}'


@dataclasses.dataclass(frozen=True)
class Case:
    agent: Callable[[kanban.Board, int, str, Callable[[], supervisor.Supervisor]], FakeAgent]
    outcome: str
    status: str
    error: str | None = None  # in the run's error
    stopped: bool = False  # the supervisor stopped the agent while it ran
    log: str | None = None  # in the run's log
    profile: str = ""  # more profile lines
    calls: tuple[str, ...] = ()  # asked of the workspace port, in order


def _reports_done(b: kanban.Board, card: int, token: str, _: object) -> FakeAgent:
    return FakeAgent(
        output=["working"],
        exits_after=0.0,
        during=lambda: b.complete(card, token=token, summary="did it myself"),
    )


def _loses_lease(b: kanban.Board, card: int, token: str, sup: Callable[..., object]) -> FakeAgent:
    def cancel() -> None:
        b.cancel(card)
        beat = sup().heartbeat  # type: ignore[attr-defined]
        beat.beat()  # the next heartbeat is refused: the lease is lost

    return FakeAgent(output=["working"], exits_after=None, during=cancel)


CASES = {
    "exits 0": Case(
        lambda *_: FakeAgent(output=["all good"], exits_after=30.0),
        "done",
        "done",
        calls=("prepare", "keep_work: run ended done", "publish"),
    ),
    "exits 1": Case(
        lambda *_: FakeAgent(output=["oops"], returncode=1),
        "failed",
        "ready",
        error="agent exit code 1: oops",
    ),
    "reported before exit": Case(
        _reports_done,
        "done",
        "done",
        log="the agent reported done before it exited",
        calls=("prepare", "keep_work: after the agent reported done", "publish"),
    ),
    "lease lost": Case(
        _loses_lease,
        "cancelled",
        "cancelled",
        stopped=True,
        log="lease lost (run cancelled): stopping the agent",
        calls=("prepare", "keep_work: after the card was cancelled"),
    ),
    "cost cap": Case(
        lambda *_: FakeAgent(output=[USAGE], exits_after=None),
        "blocked",
        "blocked",
        error="cost cap reached: $1.50 of $1.00",
        stopped=True,
        profile="max_cost_usd = 1.0\n",
    ),
    "timeout": Case(
        lambda *_: FakeAgent(output=["thinking"], exits_after=None),
        "timed_out",
        "ready",
        error="timed out after 1h00m",
        stopped=True,
        log="timeout after 1h00m: stopping the agent",
    ),
    "stalled": Case(
        lambda *_: FakeAgent(output=["thinking"], exits_after=None),
        "stalled",
        "ready",
        error="stalled: no output for 5m",
        stopped=True,
        profile='idle_timeout = "5m"\n',
    ),
    "program missing": Case(
        lambda *_: FakeAgent(fails_to_start=errors.ProgramMissing("command not found: 'x'")),
        "blocked",
        "blocked",
        error="command not found: 'x'",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_branch_of_the_supervisor_records_its_outcome(
    name: str, repo: Path, repo_db: str, tmp_path: Path
) -> None:
    case = CASES[name]
    write_profile(repo, "fake", PROFILE + case.profile)
    clock = FakeClock()
    with board_in(repo, db=repo_db) as b:
        card = b.add(name, profile="fake")
        claim = b.claim(card_id=card.id)
        assert claim is not None
        made: list[supervisor.Supervisor] = []
        runner = FakeRunner(clock, [case.agent(b, card.id, claim.token, lambda: made[0])])
        spaces = FakeWorkspaces(tmp_path / "spaces")
        sup = supervisor.Supervisor(
            b,
            card_id=card.id,
            run_id=claim.run_id,
            token=claim.token,
            runner=runner,
            workspaces=spaces,
            clock=clock,
        )
        made.append(sup)
        began = clock.now
        assert sup.run() == 0
        (run,) = b.runs(card.id)
        status = b.get(card.id).status
    assert (run.outcome, status) == (case.outcome, case.status), run.error
    if case.error is not None:
        assert case.error in (run.error or ""), run.error
    pid = FakeRunner.FIRST_PID
    if runner.started:
        assert runner.started[0][0] == ["fake-agent", str(card.id)]
        assert run.pid == pid  # the agent was recorded before it was watched
        assert pid in runner.stopped  # its group is always stopped before the run is released
        assert (runner.processes[pid].returncode == -15) is case.stopped
    assert run.released_at is not None  # nothing of the run is left: the card may run again
    if case.log is not None:
        assert run.log_path is not None
        assert case.log in Path(run.log_path).read_text(), Path(run.log_path).read_text()
    if case.calls:
        assert spaces.calls == list(case.calls)
    assert clock.now - began <= 3600 + 1  # the clock was the fake's: an hour at most


def test_the_dispatcher_ticks_on_its_injected_clocks(repo: Path, repo_db: str) -> None:
    """The tick's time and the loop's monotonic clock are the dispatcher's to be given: a
    card backing off for an hour is claimed by a tick an hour ahead, and its dispatcher row
    carries that time."""
    import datetime as dt

    import sqlalchemy as sa

    from kanban import clock, dispatcher, models

    ahead = clock.now() + dt.timedelta(hours=1, seconds=5)
    ticks = FakeClock()
    with board_in(repo, db=repo_db) as b:
        card = b.add("later", profile="demo")
        b.tx.write(
            lambda c: c.execute(
                sa.update(models.cards)
                .where(models.cards.c.id == card.id)
                .values(not_before=clock.now() + dt.timedelta(hours=1))
            )
        )
        now = dispatcher.Dispatcher(b, name="now", monotonic=ticks)
        assert now.tick().claimed == []
        spawner = _NoSupervisor()
        later = dispatcher.Dispatcher(
            b, name="later", now=lambda: ahead, monotonic=ticks, spawner=spawner
        )
        assert later.tick().claimed == [card.id]
        for child in spawner.started:
            child.wait()
        beat = b.tx.read(
            lambda c: c.execute(
                sa.select(models.dispatchers.c.heartbeat_at).where(
                    models.dispatchers.c.name == "later"
                )
            ).scalar_one()
        )
    beat = beat if beat.tzinfo else beat.replace(tzinfo=dt.UTC)
    assert abs((beat - ahead).total_seconds()) < 1e-3


class _NoSupervisor:
    """A spawner whose supervisor exits at once (the claim is what this test looks at)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: object, *, cwd: Path, env: object, log: Path) -> object:
        self.started.append(subprocess.Popen([sys.executable, "-c", "pass"]))
        return self.started[-1]
