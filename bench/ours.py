"""Our side: the same workloads through kanban's Python API and its real command line.

Boards live in a fresh git repository each (real worktrees for every run); processes are
real (`kanban dispatch`, a supervisor per run, `bench/trivial_agent.py` as the agent). PostgreSQL
figures use a fresh schema on the server named by `url`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import common

AGENT = Path(__file__).resolve().parent / "trivial_agent.py"
KANBAN = str(Path(sys.executable).parent / "kanban")


def _env() -> dict[str, str]:
    """The environment of a user with default settings: none of ours leaks in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KANBAN_")}


@contextlib.contextmanager
def _repo(*, agent: list[str] | None = None, workers: int = 8) -> Iterator[Path]:
    """A git repository with a board (`kanban init`) and a `bench` profile running the
    trivial agent, its log at `<repo>/../agents.jsonl`."""
    from kanban.testing import git_repo

    with tempfile.TemporaryDirectory() as tmp:
        repo = git_repo(Path(tmp) / "repo")
        log = Path(tmp) / "agents.jsonl"
        command = ["{python}", str(AGENT), "--log", str(log), *(agent or []), "{card_id}"]
        (repo / "profiles").mkdir()
        (repo / "profiles" / "bench.toml").write_text(
            'description = "bench: the trivial agent"\n'
            f"command = {json.dumps(command)}\n"
            f'prompt = "file"\nconcurrency = {workers}\nworkspace = "worktree"\n'
        )
        subprocess.run([KANBAN, "init"], cwd=repo, env=_env(), check=True, capture_output=True)
        yield repo


def _open(repo: Path, db: str | None = None) -> Any:
    from kanban import api, settings

    return api.connect(settings.load({"db": db} if db else {}, cwd=repo))


@contextlib.contextmanager
def _board(url: str | None, repo: Path) -> Iterator[tuple[Any, str]]:
    """The repo's own SQLite board, or a fresh PostgreSQL schema when `url` is given."""
    if not url:
        with _open(repo) as board:
            yield board, board.settings.db_url
        return
    from kanban.testing import postgres_schema

    with postgres_schema(url, prefix="kb") as schema_url, _open(repo, schema_url) as board:
        yield board, schema_url


def _bulk(board: Any, statuses: list[str], links: list[tuple[int, int]]) -> list[int]:
    """Insert cards 1..n with the given statuses, and parent links, in one transaction
    (untimed set-up, as on the Hermes side). Returns their ids."""
    import sqlalchemy as sa

    from kanban.models import cards, dependencies

    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "title": f"card {i}",
            "body": "",
            "status": status,
            "profile": "bench",
            "priority": 0,
            "review": False,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
            "ready_at": now + dt.timedelta(microseconds=i) if status == "ready" else None,
        }
        for i, status in enumerate(statuses)
    ]

    def insert(conn: Any) -> list[int]:
        conn.execute(sa.insert(cards), rows)
        ids = [r[0] for r in conn.execute(sa.select(cards.c.id).order_by(cards.c.id))]
        if links:
            conn.execute(
                sa.insert(dependencies),
                [{"parent_id": ids[p], "child_id": ids[c]} for p, c in links],
            )
        return ids

    return list(board.tx.write(insert))


def version(_: dict[str, Any]) -> dict[str, Any]:
    import sqlite3

    import sqlalchemy

    import kanban

    return {
        "system": "kanban",
        "version": kanban.__version__,
        "python": sys.version.split()[0],
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
    }


def create(p: dict[str, Any]) -> dict[str, Any]:
    import kanban

    with tempfile.TemporaryDirectory() as tmp, kanban.open_board(f"{tmp}/board.db") as board:
        n = p["cards"]
        seconds = common.timed(lambda: [board.add(f"card {i}") for i in range(n)])
        return {"cards": n, "seconds": round(seconds, 3), "per_second": round(n / seconds, 1)}


def claims(p: dict[str, Any]) -> dict[str, Any]:
    def once() -> dict[str, Any]:
        with _repo() as repo, _board(p.get("url"), repo) as (board, db):
            _bulk(board, ["ready"] * p["cards"], [])
            return common.run_claimers(
                "ours", {"db": db, "cards": p["cards"]}, p["claimers"], repo.parent
            )

    return common.median_run([once() for _ in range(p.get("repeats", 1))])


def claimer(args: dict[str, Any]) -> None:
    import kanban

    with kanban.open_board(args["db"]) as board:

        def claim() -> int | None:
            got = board.claim(worker=args["name"])
            return None if got is None else int(got.card_id)

        common.claimer_loop(claim, args)


def tick(p: dict[str, Any]) -> dict[str, Any]:
    """One dispatcher tick on a board of p["cards"] (common.tick_board), eight workers at
    most, supervisors parked (`kanban.testing.ParkedSpawner`): the first tick, idle ticks,
    and ticks after one running card completed."""
    from kanban import dispatcher
    from kanban.testing import ParkedSpawner

    with _repo() as repo, _board(p.get("url"), repo) as (board, _):
        done, ready, waiting = common.tick_board(p["cards"])
        statuses = ["done"] * done + ["ready"] * ready + ["todo"] * waiting
        links = [(done + i, done + ready + i) for i in range(waiting)]
        _bulk(board, statuses, links)
        spawner = ParkedSpawner(board)
        loop = dispatcher.Dispatcher(board, max_workers=8, spawner=spawner)

        def once() -> float:
            seconds = common.timed(loop.tick)
            spawner.check_in()  # the supervisors' work, in their processes: not timed
            return seconds

        first = once()
        idle = [once() for _ in range(p.get("samples", 5))]
        after = []
        for _ in range(p.get("samples", 5)):
            run_id, token = next(iter(loop.tokens.items()))
            card_id = next(r.card_id for r in board.status().running if r.id == run_id)
            board.complete(card_id, token=token, summary="done")
            loop.tokens.pop(run_id)
            after.append(once())
        return {
            "cards": p["cards"],
            "first_ms": common.ms(first),
            "idle_ms": common.ms(common.median(idle)),
            "after_complete_ms": common.ms(common.median(after)),
        }


def _dispatch(repo: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [KANBAN, "dispatch", "-q", *args],
        cwd=repo,
        env=_env(),
        start_new_session=True,
    )


def handoff(p: dict[str, Any]) -> dict[str, Any]:
    """A chain of p["samples"] + 1 cards under `kanban dispatch` at default settings: from a
    parent's completion (its run's end, recorded by its supervisor) to its child's agent
    starting."""
    with _repo() as repo, _open(repo) as board:
        chain: list[int] = []
        for i in range(p["samples"] + 1):
            chain.append(board.add(f"step {i}", profile="bench", parents=chain[-1:]).id)
        _dispatch(repo, "--drain").wait(timeout=600)
        seen = common.agent_log(repo.parent / "agents.jsonl")
        ended = {c: board.runs(c)[-1].ended_at.timestamp() for c in chain}
        gaps = [
            seen[str(child)]["start"] - ended[parent] for parent, child in itertools.pairwise(chain)
        ]
        return {
            "interval_s": board.settings.tick_interval,
            "samples": len(gaps),
            "median_ms": common.ms(common.median(gaps)),
            "max_ms": common.ms(max(gaps)),
        }


def drain(p: dict[str, Any]) -> dict[str, Any]:
    """p["cards"] cards in p["chains"] chains, `kanban dispatch --drain` with p["workers"]
    workers: from the dispatcher's start to its exit, every card run in its own worktree."""
    with _repo(workers=p["workers"]) as repo, _open(repo) as board:
        ids: list[int] = []
        for i, parents in enumerate(common.drain_graph(p["cards"], p["chains"])):
            ids.append(
                board.add(f"card {i}", profile="bench", parents=[ids[j] for j in parents]).id
            )
        start = time.time()
        _dispatch(repo, "--drain", "--max-workers", str(p["workers"])).wait(timeout=1800)
        elapsed = time.time() - start
        done = sum(1 for c in board.cards(status="done"))
        return {
            "cards": len(ids),
            "done": done,
            "workers": p["workers"],
            "interval_s": board.settings.tick_interval,
            "seconds": round(elapsed, 2),
            "per_minute": round(done * 60 / elapsed, 1),
            "complete": done == len(ids),
        }


def memory(p: dict[str, Any]) -> dict[str, Any]:
    """Unique and resident memory of each running card's supervisor (the agent sleeps)."""
    import psutil

    n = p["workers"]
    with _repo(agent=["--sleep", "600"], workers=n) as repo, _open(repo) as board:
        for i in range(n):
            board.add(f"sleeper {i}", profile="bench")
        proc = _dispatch(repo, "--max-workers", str(n))
        pids: list[int] = []
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                running = board.status().running
                if len(running) == n and all(r.pid for r in running):
                    break
                time.sleep(0.2)
            running = board.status().running
            supervisors = [psutil.Process(r.supervisor_pid) for r in running]
            pids = [r.supervisor_pid for r in running] + [r.pid for r in running]
            uss = [s.memory_full_info().uss / 2**20 for s in supervisors]
            rss = [s.memory_info().rss / 2**20 for s in supervisors]
            dispatcher = psutil.Process(proc.pid).memory_full_info()
            return {
                "running": len(running),
                "per_card_uss_mb": round(common.median(uss), 1),
                "per_card_rss_mb": round(common.median(rss), 1),
                "dispatcher_uss_mb": round(dispatcher.uss / 2**20, 1),
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


def cli(p: dict[str, Any]) -> dict[str, Any]:
    with _repo() as repo:
        return common.cli_startup(
            {
                "add": [KANBAN, "add", "a card for the start-up figure"],
                "status": [KANBAN, "status"],
            },
            env=_env(),
            cwd=repo,
            samples=p["samples"],
        )


def share(p: dict[str, Any]) -> dict[str, Any]:
    """p["dispatchers"] dispatcher processes, each its own host (KANBAN_HOST_ID) with its own
    clone, share one PostgreSQL board of p["cards"] instant cards until it drains.
    Supervisors are threads of their dispatcher (`kanban.testing.dispatch_until_drained`),
    as in tests/test_several_hosts.py: the board and the claims are measured, not Python's
    start-up. Reports cards done, cards claimed more than once, and dispatchers that failed."""
    import sqlalchemy as sa

    from kanban.testing import git

    with _repo() as repo, _board(p["url"], repo) as (board, url):
        (repo / "profiles" / "instant.toml").write_text(
            'command = ["true"]\nworkspace = "none"\nconcurrency = 8\n'
        )
        git(repo, "add", "profiles")
        git(repo, "commit", "-qm", "instant profile")
        for i in range(p["cards"]):
            board.add(f"card {i}", profile="instant")
        clones = []
        for k in range(p["dispatchers"]):
            clone = repo.parent / f"host-{k}"
            git(repo.parent, "clone", "-q", str(repo), str(clone))
            clones.append(clone)
        code = "from kanban import testing; testing.dispatch_until_drained(8)"
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=clone,
                env={**_env(), "KANBAN_DB": url, "KANBAN_HOST_ID": clone.name},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for clone in clones
        ]
        failed = [proc.communicate(timeout=1800)[1][-300:] for proc in procs if proc.wait()]
        seconds = time.perf_counter() - t0
        with board.engine.connect() as conn:
            done = conn.execute(
                sa.text("SELECT count(*) FROM cards WHERE status = 'done'")
            ).scalar()
            claims = conn.execute(
                sa.text("SELECT count(*) FROM events WHERE kind = 'claimed' GROUP BY card_id")
            ).all()
            hosts = conn.execute(
                sa.text("SELECT count(DISTINCT host) FROM runs WHERE outcome = 'done'")
            ).scalar()
        return {
            "cards": p["cards"],
            "dispatchers": p["dispatchers"],
            "done": done,
            "claimed_twice": sum(1 for (n,) in claims if n > 1),
            "errors": len(failed),
            "error_sample": failed[:1],
            "hosts_that_ran_cards": hosts,
            "seconds": round(seconds, 2),
        }


MEASURES = {
    "version": version,
    "create": create,
    "claims": claims,
    "claimer": claimer,
    "tick": tick,
    "handoff": handoff,
    "drain": drain,
    "memory": memory,
    "cli": cli,
    "share": share,
}

if __name__ == "__main__":
    raise SystemExit(common.main(MEASURES))
