"""`kanban dispatch` as a pod's main process, and pods that share nothing but the board and
the remote: SIGTERM stops claiming at once and waits `--grace` for running agents, or with
`--handoff` hands their cards back; `kanban health` answers the probes; identity comes from
POD_NAME; a pod killed with its whole process tree and its disk deleted mid-drain costs
nothing but a lease TTL. Real dispatchers, supervisors, agents, git remotes and signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from pods import Pods

from kanban import settings
from kanban.testing import FAST, board_in, git, kanban_process, pid_alive, wait_for, write_profile

TTL = float(FAST["KANBAN_LEASE_TTL"])


def _kanban(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kanban", *args],
        cwd=cwd,
        env={**os.environ, **FAST, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_host_id_is_the_pod_name_unless_kanban_host_id_says_otherwise(repo: Path) -> None:
    db = str(repo / ".kanban" / "board.db")
    assert settings.load({"db": db}, cwd=repo, env={"POD_NAME": "kanban-7d9f-x2"}).host_id == (
        "kanban-7d9f-x2"
    )
    env = {"POD_NAME": "kanban-7d9f-x2", "KANBAN_HOST_ID": "build-1"}
    assert settings.load({"db": db}, cwd=repo, env=env).host_id == "build-1"


def test_an_unreachable_board_is_one_clear_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    for url in (
        "postgresql://kanban@127.0.0.1:1/kanban",
        "postgresql://kanban:s3cret@127.0.0.1:1/k",
    ):
        out = _kanban(tmp_path, "--db", url, "dispatch")
        assert out.returncode == 10, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith("kanban: cannot reach the board at postgresql+psycopg://kanban")
        assert "check the URL" in lines[0] and "Traceback" not in out.stderr
        assert "s3cret" not in out.stderr  # the password is redacted


SLOW = 'command = ["sleep", "{seconds}"]\nworkspace = "none"\nconcurrency = 4\n'


def test_sigterm_claims_nothing_more_and_waits_for_running_agents_within_the_grace(
    repo: Path,
) -> None:
    write_profile(repo, "slow", SLOW.format(seconds=2.5))
    with board_in(repo) as b:
        first = b.add("running when the pod is told to stop", profile="slow")
        proc = kanban_process(repo, "dispatch", "--grace", "60s")
        wait_for(lambda: any(r.pid for r in b.status().running), what="the agent to start")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        later = b.add("added after SIGTERM", profile="slow")
        out, _ = proc.communicate(timeout=60)
        exited = time.time()
        assert proc.returncode == 0, out
        # The running agent was left to finish, and the dispatcher waited for it.
        [run] = b.runs(first.id)
        assert run.outcome == "done" and run.ended_at is not None
        assert run.ended_at.timestamp() <= exited
        # Nothing was claimed after the signal.
        assert b.get(later.id).status == "ready" and b.runs(later.id) == []


def test_the_grace_bounds_the_wait_and_the_agent_goes_on(repo: Path) -> None:
    write_profile(repo, "slow", SLOW.format(seconds=30))
    with board_in(repo) as b:
        card = b.add("outlives the grace", profile="slow")
        proc = kanban_process(repo, "dispatch", "--grace", "1s")
        wait_for(lambda: any(r.pid for r in b.status().running), what="the agent to start")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert time.monotonic() - t0 < 10
        [run] = b.runs(card.id)
        assert run.outcome is None and run.pid is not None and pid_alive(run.pid)
        os.killpg(run.supervisor_pid or 0, signal.SIGKILL)
        os.killpg(run.pid, signal.SIGKILL)


def test_health_probes_follow_the_dispatcher(repo: Path, tmp_path: Path) -> None:
    none = _kanban(repo, "health", "--live")
    assert none.returncode == 13 and "no dispatcher has started here" in none.stderr
    with board_in(repo):
        pass
    proc = kanban_process(repo, "dispatch")
    try:
        wait_for(lambda: _kanban(repo, "health", "--ready").returncode == 0, what="ready")
        live = _kanban(repo, "health", "--live")
        assert live.returncode == 0 and live.stdout.startswith("live: dispatcher pid")
        ready = _kanban(repo, "health")
        assert ready.stdout.startswith("ready:") and str(repo) in ready.stdout
        as_json = json.loads(_kanban(repo, "health", "--live", "--json").stdout)
        assert as_json["probe"] == "live" and as_json["ok"] is True
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    gone = _kanban(repo, "health", "--live")
    assert gone.returncode == 13 and "is not running" in gone.stderr
    # Ready needs the repository cloned: a dispatcher outside any clone is live, not ready.
    bare = tmp_path / "no-clone"
    bare.mkdir()
    with board_in(bare, db=str(bare / "board.db")):
        pass
    proc = kanban_process(bare, "dispatch", env={"KANBAN_DB": str(bare / "board.db")})
    try:
        wait_for(
            lambda: (
                _kanban(bare, "--db", str(bare / "board.db"), "health", "--live").returncode == 0
            ),
            what="live",
        )
        not_ready = _kanban(bare, "--db", str(bare / "board.db"), "health", "--ready")
        assert not_ready.returncode == 13 and "no git clone" in not_ready.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


# ------------------------------------------------------------------ pods on PostgreSQL


@pytest.fixture
def pods(tmp_path: Path, shared_postgres_url: str) -> Iterator[Pods]:
    made = Pods(tmp_path, shared_postgres_url)
    yield made
    made.close()


@pytest.mark.slow
@pytest.mark.postgres
def test_handoff_gives_the_cards_back_and_another_pod_takes_them_at_once(pods: Pods) -> None:
    pods.profiles = {"work": SLOW.format(seconds=120)}
    pods.make("pod-a")
    pods.profiles = {"work": 'command = ["true"]\nworkspace = "none"\n'}
    pods.make("pod-b")
    with pods.board() as b:
        ids = [b.add(f"long {i}", profile="work").id for i in range(2)]
        a = pods.start("pod-a", "--handoff", "--grace", "20s")
        wait_for(
            lambda: len([r for r in b.status().running if r.pid]) == 2, what="both agents on a"
        )
        agents = [r.pid for r in b.status().running]
        t0 = time.monotonic()
        a.send_signal(signal.SIGTERM)
        out, _ = a.communicate(timeout=30)
        assert a.returncode == 0, out
        assert time.monotonic() - t0 < 20
        for card_id in ids:
            [run] = b.runs(card_id)
            assert (run.host, run.outcome) == ("pod-a", "crashed")
            assert "handed back" in (run.error or "")
            card = b.get(card_id)
            assert card.status == "ready" and card.attempts == 0  # no attempt spent
        assert not any(pid and pid_alive(pid) for pid in agents), "the agents were stopped"
        handed_back = time.monotonic()
        b_proc = pods.start("pod-b", "--drain")
        out, _ = b_proc.communicate(timeout=60)
        assert b_proc.returncode == 0, out
        for card_id in ids:
            assert [(r.host, r.outcome) for r in b.runs(card_id)][-1] == ("pod-b", "done")
        # Taken at once, not after a lease TTL.
        assert time.monotonic() - handed_back < 30


DEMO = 'command = ["{python}", "-m", "kanban.demo_agent"]\nprompt = "file"\nconcurrency = 3\n'


@pytest.mark.slow
@pytest.mark.postgres
def test_three_pods_share_nothing_and_one_vanishes_mid_drain(pods: Pods) -> None:
    """Three pods, each its own clone, HOME and state directory, share the PostgreSQL board
    and the bare remote only. One is killed with its whole process tree (kill -9) and its
    disk deleted while it runs agents; a fresh pod with a new name joins. Every card ends done
    exactly once, every done card's branch is on the remote with its parents' work, and the
    vanished pod's runs were taken over right after their lease TTL."""
    pods.profiles = {"demo": DEMO}
    with pods.board() as b:
        roots = [b.add(f"root {i}", profile="demo", body="demo: sleep 2").id for i in range(6)]
        kids = [
            b.add(f"child {i}", profile="demo", parents=[roots[i], roots[(i + 1) % 6]]).id
            for i in range(6)
        ]
        ids = roots + kids
        procs = {n: pods.start(n, "--drain") for n in ("pod-a", "pod-b", "pod-c")}
        victim = wait_for(
            lambda: next((r.host for r in b.status().running if r.pid and r.host in procs), None),
            timeout=120,
            what="a pod running an agent",
        )
        lost = [r for r in b.status().running if r.host == victim]
        killed = pods.kill_tree(procs.pop(victim))
        assert all(not pid_alive(pid) for pid in killed)
        pods.delete(victim)
        procs["pod-d"] = pods.start("pod-d", "--drain")
        for name, proc in procs.items():
            out, _ = proc.communicate(timeout=240)
            assert proc.returncode == 0, (name, out)
        for card_id in ids:
            runs = b.runs(card_id)
            assert [r.outcome for r in runs].count("done") == 1, (card_id, runs)
            assert b.get(card_id).status == "done"
        for run in lost:
            reclaimed = b.runs(run.card_id)[0]
            assert (reclaimed.host, reclaimed.outcome) == (victim, "reclaimed")
            assert reclaimed.heartbeat_at is not None and reclaimed.ended_at is not None
            waited = (reclaimed.ended_at - reclaimed.heartbeat_at).total_seconds()
            assert TTL <= waited < TTL + 15, waited
        hosts = {r.host for card_id in ids for r in b.runs(card_id) if r.outcome == "done"}
        assert "pod-d" in hosts or len(hosts) >= 2, hosts
        branches = {card_id: b.get(card_id).branch for card_id in ids}
        with b.engine.connect() as conn:
            nothing_live = conn.execute(
                sa.text("SELECT count(*) FROM runs WHERE outcome IS NULL")
            ).scalar()
        assert nothing_live == 0
    files = {
        card_id: f"cards/{card_id}-{'root' if card_id in roots else 'child'}-"
        f"{(roots + kids).index(card_id) % 6}.md"
        for card_id in ids
    }
    for i, kid in enumerate(kids):
        branch = branches[kid]
        assert branch, kid
        tree = set(git(pods.origin, "ls-tree", "-r", "--name-only", branch).splitlines())
        parents = [roots[i], roots[(i + 1) % 6]]
        assert {files[kid], *(files[p] for p in parents)} <= tree, (kid, sorted(tree))
        for parent in parents:
            git(pods.origin, "merge-base", "--is-ancestor", branches[parent] or "", branch)
