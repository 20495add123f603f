"""Several hosts on one PostgreSQL board: real `kanban dispatch` processes, one per "host"
(each with its own KANBAN_HOST_ID and its own clone of a repository that shares one bare
remote), real supervisors and agents, and real signals (kill -9, SIGSTOP, SIGCONT)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

import kanban
from kanban import board as verbs
from kanban.testing import (
    FAST,
    board_in,
    git,
    git_repo,
    kanban_process,
    kill_run_processes,
    pid_alive,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TTL = float(FAST["KANBAN_LEASE_TTL"])
INSTANT = 'command = ["true"]\nworkspace = "none"\nconcurrency = 8\n'
DEMO = 'command = ["{python}", "-m", "kanban.demo_agent"]\nprompt = "file"\n'
HANGS = 'command = ["sleep", "3600"]\n'


class Hosts:
    """A bare `origin.git`, and per host a clone of it where that host's dispatcher runs."""

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url
        self.procs: list[subprocess.Popen[str]] = []
        seed = git_repo(root / "seed")
        self.origin = root / "origin.git"
        git(root, "clone", "-q", "--bare", str(seed), str(self.origin))

    def clone(self, name: str, profiles: dict[str, str] | None = None) -> Path:
        path = self.root / name
        git(self.root, "clone", "-q", str(self.origin), str(path))
        git(path, "config", "user.name", f"agent on {name}")
        git(path, "config", "user.email", f"{name}@kanban.invalid")
        for profile, body in (profiles or {}).items():
            (path / "profiles").mkdir(exist_ok=True)
            (path / "profiles" / f"{profile}.toml").write_text(body)
        return path

    def env(self, name: str) -> dict[str, str]:
        return {"KANBAN_DB": self.url, "KANBAN_HOST_ID": name, "KANBAN_REMOTE": "origin"}

    def dispatch(self, name: str, *args: str) -> subprocess.Popen[str]:
        proc = kanban_process(self.root / name, "dispatch", "-q", *args, env=self.env(name))
        self.procs.append(proc)
        return proc

    def dispatch_threaded(self, name: str, *, max_workers: int) -> subprocess.Popen[str]:
        """A dispatcher process whose supervisors are threads (see the 300-card test)."""
        code = f"from kanban import testing; testing.dispatch_until_drained({max_workers})"
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=self.root / name,
            env={**os.environ, **FAST, **self.env(name)},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def board(self) -> kanban.Board:
        """The board as a person at the seed repository sees it."""
        return board_in(self.root / "seed", db=self.url)


@pytest.fixture
def hosts(tmp_path: Path, shared_postgres_url: str) -> Iterator[Hosts]:
    made = Hosts(tmp_path, shared_postgres_url)
    yield made
    for proc in made.procs:
        if proc.poll() is None:
            proc.kill()
        if proc.stdout is not None and not proc.stdout.closed:
            proc.communicate()
        proc.wait()
    with made.board() as b:
        kill_run_processes(b)  # by identity: a bare pid of an ended run may be anyone's now


def _finish(proc: subprocess.Popen[str], timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def _no_overlap(runs: list[kanban.views.RunView]) -> None:  # type: ignore[name-defined]
    spans = sorted((r.claimed_at, r.ended_at) for r in runs)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end is not None and end <= start, f"card {runs[0].card_id}: runs overlap"


def test_three_hosts_drain_300_cards_each_done_exactly_once(hosts: Hosts) -> None:
    """Three dispatcher processes, each its own host, race for 300 ready cards. The
    supervisors run as threads of their dispatcher (`kanban.testing.ThreadSpawner`, the same
    supervisor code without a Python start-up per run): 300 supervisor processes would take
    minutes on a small machine. The tests below use real supervisor processes."""
    names = ["host-a", "host-b", "host-c"]
    for name in names:
        hosts.clone(name, {"instant": INSTANT})
    with hosts.board() as b:
        ids = [b.add(f"card {i}", profile="instant").id for i in range(300)]
        procs = [hosts.dispatch_threaded(name, max_workers=8) for name in names]
        for proc in procs:
            out = _finish(proc)
            # No errors: nothing logged at ERROR or above and no traceback, in any dispatcher.
            assert not any(w in out for w in ("ERROR", "CRITICAL", "Traceback")), out
        assert {c.status for c in b.cards()} == {"done"}
        per_host: Counter[str] = Counter()
        for card_id in ids:
            runs = b.runs(card_id)
            assert [r.outcome for r in runs].count("done") == 1, (card_id, runs)
            _no_overlap(runs)
            per_host.update(r.host for r in runs if r.outcome == "done")
        with b.engine.connect() as conn:
            claims = conn.execute(
                sa.text(
                    "SELECT card_id, count(*) FROM events WHERE kind = 'claimed' GROUP BY card_id"
                )
            ).all()
    assert set(per_host) == set(names), f"not every host ran cards: {per_host}"
    assert sum(per_host.values()) == 300
    # Every card was claimed exactly once: nothing ran twice, nothing was reclaimed.
    assert {count for _, count in claims} == {1} and len(claims) == 300


def test_a_vanished_host_is_reclaimed_after_the_ttl_and_its_late_reports_refused(
    hosts: Hosts,
) -> None:
    # Host A's agent hangs without asking its (frozen) supervisor anything: the demo agent's
    # first `show` through the channel would time out after 60 s and end it, which a slow
    # drain on B outlasted once. Host B's is the demo agent, done on its second attempt.
    hosts.clone("host-a", {"slow": HANGS})
    hosts.clone("host-b", {"slow": DEMO})
    with hosts.board() as b:
        ids = [
            b.add(f"hangs on a {i}", profile="slow", body="demo: hang-once").id for i in range(2)
        ]
        host_a = hosts.dispatch("host-a", "--max-workers", "2")
        wait_for(
            lambda: len([r for r in b.status().running if r.pid]) == 2,
            timeout=90,
            what="both agents running on host-a",
        )
        lost = {r.card_id: r for r in b.status().running}
        tokens = {
            card_id: b.tx.read(lambda c, r=r: verbs.token_of(c, r.id))
            for card_id, r in lost.items()
        }
        # Host A vanishes: its dispatcher dies, its supervisors stop renewing their leases.
        host_a.kill()
        host_a.communicate()
        for run in lost.values():
            assert run.host == "host-a" and run.supervisor_pid is not None
            os.kill(run.supervisor_pid, signal.SIGSTOP)

        _finish(hosts.dispatch("host-b", "--drain"))

        for card_id in ids:
            first, second = b.runs(card_id)
            assert (first.host, first.outcome) == ("host-a", "reclaimed")
            assert (second.host, second.outcome) == ("host-b", "done")
            # Never before the TTL: the reclaim came after the last heartbeat plus the TTL.
            assert first.ended_at is not None and first.heartbeat_at is not None
            assert first.lease_expires_at is not None and first.lease_expires_at < first.ended_at
            assert (first.ended_at - first.heartbeat_at).total_seconds() >= TTL
            assert "lease expired" in (first.error or "") and "host host-a" in (first.error or "")
        # Host B never signalled host A's processes: the agents hang on, the supervisors are
        # still frozen where we stopped them.
        for run in lost.values():
            assert run.pid is not None and pid_alive(run.pid)
            assert psutil.Process(run.supervisor_pid).status() == psutil.STATUS_STOPPED

        before = _rows(b)
        # A late report from the vanished host's agent, with its old token: refused.
        card_id = ids[0]
        late = subprocess.run(
            [sys.executable, "-m", "kanban", "complete", str(card_id), "--token", tokens[card_id]],
            env={**os.environ, **hosts.env("host-a")},
            cwd=hosts.root / "host-a",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert late.returncode == 5, late.stdout + late.stderr
        assert "lease lost" in late.stderr + late.stdout and "refused" in late.stderr + late.stdout
        # The frozen supervisors wake up, find their lease gone and stop their own agents.
        for run in lost.values():
            assert run.supervisor_pid is not None
            os.kill(run.supervisor_pid, signal.SIGCONT)
        for run in lost.values():
            wait_for(
                lambda run=run: not pid_alive(run.supervisor_pid) and not pid_alive(run.pid),
                timeout=60,
                what=f"host-a's supervisor of card {run.card_id} to stop its agent and exit",
            )
        assert _rows(b) == before, "a late writer changed the board"
        assert {b.get(i).status for i in ids} == {"done"}


def _rows(b: kanban.Board) -> dict[str, list[tuple[object, ...]]]:
    """Cards, runs and events (the dispatcher rows may change when a dispatcher stops)."""
    with b.engine.connect() as conn:
        return {
            table: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))]
            for table in ("cards", "runs", "events", "comments")
        }


def test_a_child_on_another_host_starts_from_its_parents_pushed_branch(hosts: Hosts) -> None:
    """Each host knows one profile, so the parent can only run on A and the child only on B.
    The dispatchers run until the child is done and both runs have finished their cleanup
    (the push), then stop on SIGTERM. Not `--drain`: a drain ends when nothing *this host*
    can run is left, and host B's could end at once, before A claimed the parent (a ready
    card of a profile B does not know); which one ran first was a race."""
    a = hosts.clone("host-a", {"on-a": DEMO})
    b_clone = hosts.clone("host-b", {"on-b": DEMO})
    with hosts.board() as b:
        parent = b.add("parent work", profile="on-a")
        child = b.add("child work", profile="on-b", parents=[parent.id])
        procs = [hosts.dispatch(name) for name in ("host-a", "host-b")]

        def finished() -> bool:
            with b.engine.connect() as conn:
                cleaning = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM runs WHERE outcome IS NULL"
                        " OR (released_at IS NULL AND supervisor_pid IS NOT NULL)"
                    )
                ).scalar()
            return b.get(child.id).status == "done" and cleaning == 0

        wait_for(finished, timeout=180, what="the child done and both runs cleaned up")
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            _finish(proc)
        assert [(r.host, r.outcome) for r in b.runs(parent.id)] == [("host-a", "done")]
        assert [(r.host, r.outcome) for r in b.runs(child.id)] == [("host-b", "done")]
        parent_branch, child_branch = b.get(parent.id).branch, b.get(child.id).branch
    assert parent_branch and child_branch
    parent_file = f"cards/{parent.id}-parent-work.md"
    child_file = f"cards/{child.id}-child-work.md"
    # The parent's work reached the remote from A, and B's child started on top of it.
    on_origin: Callable[[str], list[str]] = lambda ref: git(  # noqa: E731
        hosts.origin, "ls-tree", "-r", "--name-only", ref
    ).splitlines()
    assert parent_file in on_origin(parent_branch)
    assert {parent_file, child_file} <= set(on_origin(child_branch))
    git(hosts.origin, "merge-base", "--is-ancestor", parent_branch, child_branch)
    assert git(b_clone, "rev-parse", parent_branch) == git(hosts.origin, "rev-parse", parent_branch)
    # The child's own branch was never in A's clone: only pushed branches travel.
    assert git(a, "branch", "--list", child_branch) == ""
