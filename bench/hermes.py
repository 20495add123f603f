"""The Hermes Agent side: its Kanban board driven through `hermes_cli.kanban_db`.

Runs in Hermes' own virtual environment (`pip install hermes-agent`), never in ours. Where
Hermes would start an LLM worker (`hermes -p PROFILE ...`) a `spawn_fn` starts
`bench/trivial_agent.py`, which completes the task through the same API a worker uses. The
dispatcher loop is `run_daemon`'s (connect, `dispatch_once`, wait the interval), written out
because `run_daemon` takes no spawn function.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import common

AGENT = Path(__file__).resolve().parent / "trivial_agent.py"
ASSIGNEE = "default"  # the profile every Hermes home has; others are skipped


def _home(tmp: str) -> Path:
    """Point Hermes at a fresh home and board before it is imported."""
    os.environ["HERMES_HOME"] = tmp
    db = Path(tmp) / "kanban.db"
    os.environ["HERMES_KANBAN_DB"] = str(db)
    return db


def _nocheck(p: dict[str, Any]) -> bool:
    """With p["nocheck"], switch off Hermes' post-commit file-length check in this process
    (and its agents): it opens and closes the database file, which drops every POSIX lock
    the process holds on it, so concurrent writers corrupt the board. Measured both ways to
    tell that defect apart from the design's own cost (docs/performance.md)."""
    if p.get("nocheck"):
        from hermes_cli import kanban_db

        kanban_db._check_file_length_invariant = lambda conn: None
    return bool(p.get("nocheck"))


def _connect(db: Path) -> sqlite3.Connection:
    from hermes_cli import kanban_db

    return kanban_db.connect(db)


def _bulk(
    conn: sqlite3.Connection, rows: list[dict[str, Any]], links: list[tuple[str, str]]
) -> None:
    """Insert tasks copied from a task `create_task` made, so every column has Hermes' own
    defaults; then the parent links. Untimed set-up, not part of any figure."""
    from hermes_cli import kanban_db

    template_id = kanban_db.create_task(conn, title="template", assignee=ASSIGNEE)
    template = dict(conn.execute("SELECT * FROM tasks WHERE id = ?", (template_id,)).fetchone())
    conn.execute("DELETE FROM tasks WHERE id = ?", (template_id,))
    conn.execute("DELETE FROM task_events WHERE task_id = ?", (template_id,))
    columns = list(template)
    sql = f"INSERT INTO tasks ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    conn.executemany(sql, ([{**template, **row}[c] for c in columns] for row in rows))
    conn.executemany("INSERT INTO task_links (parent_id, child_id) VALUES (?, ?)", links)
    conn.commit()


def _task(i: int, status: str, now: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": f"t_{i:08x}",
        "title": f"card {i}",
        "status": status,
        "created_at": now - 100_000 + i,
    }
    if status == "done":
        row["completed_at"] = now
    return row


def version(_: dict[str, Any]) -> dict[str, Any]:
    return {
        "system": "hermes-agent",
        "version": metadata.version("hermes-agent"),
        "python": sys.version.split()[0],
    }


def create(p: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        conn = _connect(_home(tmp))
        from hermes_cli import kanban_db

        n = p["cards"]
        seconds = common.timed(
            lambda: [
                kanban_db.create_task(conn, title=f"card {i}", assignee=ASSIGNEE) for i in range(n)
            ]
        )
        return {"cards": n, "seconds": round(seconds, 3), "per_second": round(n / seconds, 1)}


def claims(p: dict[str, Any]) -> dict[str, Any]:
    def once() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            db = _home(tmp)
            conn = _connect(db)
            now = int(time.time())
            _bulk(conn, [_task(i, "ready", now) for i in range(p["cards"])], [])
            conn.close()
            args = {"db": str(db), "cards": p["cards"], "nocheck": p.get("nocheck", False)}
            return common.run_claimers("hermes", args, p["claimers"], Path(tmp))

    return common.median_run([once() for _ in range(p.get("repeats", 1))])


def claimer(args: dict[str, Any]) -> None:
    """Claim like a worker pool on Hermes' API would: read the head of the ready queue, try
    its cards in random order (so claimers spread out instead of all racing for one row)."""
    db = _home(str(Path(args["db"]).parent))
    from hermes_cli import kanban_db

    _nocheck(args)
    conn = _connect(db)

    def claim() -> str | None:
        while True:
            rows = conn.execute(
                "SELECT id FROM tasks WHERE status = 'ready' AND claim_lock IS NULL "
                "ORDER BY priority DESC, created_at ASC LIMIT 32"
            ).fetchall()
            if not rows:
                return None
            ids = [r["id"] for r in rows]
            random.shuffle(ids)
            for task_id in ids:
                if kanban_db.claim_task(conn, task_id, claimer=args["name"]) is not None:
                    return task_id

    common.claimer_loop(claim, args)


def tick(p: dict[str, Any]) -> dict[str, Any]:
    """`dispatch_once` on a board of p["cards"] (common.tick_board), eight workers at most,
    with a spawn function that starts nothing: first tick, idle ticks, and ticks after one
    running task completed."""
    with tempfile.TemporaryDirectory() as tmp:
        db = _home(tmp)
        conn = _connect(db)
        from hermes_cli import kanban_db

        done, ready, waiting = common.tick_board(p["cards"])
        now = int(time.time())
        rows = [_task(i, "done", now) for i in range(done)]
        rows += [_task(done + i, "ready", now) for i in range(ready)]
        rows += [_task(done + ready + i, "todo", now) for i in range(waiting)]
        links = [(f"t_{done + i:08x}", f"t_{done + ready + i:08x}") for i in range(waiting)]
        _bulk(conn, rows, links)

        def once() -> float:
            return common.timed(
                lambda: kanban_db.dispatch_once(
                    conn, spawn_fn=lambda task, workspace: None, max_spawn=8
                )
            )

        first = once()
        idle = [once() for _ in range(p.get("samples", 5))]
        after = []
        for _ in range(p.get("samples", 5)):
            running = conn.execute(
                "SELECT id FROM tasks WHERE status = 'running' LIMIT 1"
            ).fetchone()["id"]
            kanban_db.complete_task(conn, running, result="done")
            after.append(once())
        return {
            "cards": p["cards"],
            "first_ms": common.ms(first),
            "idle_ms": common.ms(common.median(idle)),
            "after_complete_ms": common.ms(common.median(after)),
        }


def _dispatch_loop(
    db: Path,
    *,
    interval: float,
    max_spawn: int,
    log: Path,
    stop: threading.Event,
    tick_errors: list[str],
    agents: list[subprocess.Popen[bytes]],
    nocheck: bool = False,
) -> threading.Thread:
    """Hermes' daemon loop (`run_daemon`): connect, one `dispatch_once`, wait `interval`."""
    from hermes_cli import kanban_db

    def spawn(task: Any, workspace: str) -> int:
        # -P: the agent's own directory (bench/) must not shadow Hermes' modules.
        argv = [
            sys.executable,
            "-P",
            str(AGENT),
            task.id,
            "--log",
            str(log),
            "--hermes-db",
            str(db),
        ]
        argv += ["--hermes-nocheck"] if nocheck else []
        agent = subprocess.Popen(
            argv, cwd=workspace, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        agents.append(agent)  # settled before the measure's directory is removed
        return agent.pid

    def loop() -> None:
        while not stop.is_set():
            try:
                with contextlib.closing(kanban_db.connect()) as conn:
                    kanban_db.dispatch_once(conn, spawn_fn=spawn, max_spawn=max_spawn)
            except Exception as exc:  # as run_daemon: one failed tick never stops the loop
                tick_errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            stop.wait(timeout=interval)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def _graph(conn: sqlite3.Connection, parents: list[list[int]]) -> list[str]:
    from hermes_cli import kanban_db

    ids: list[str] = []
    for i, ps in enumerate(parents):
        ids.append(
            kanban_db.create_task(
                conn, title=f"card {i}", assignee=ASSIGNEE, parents=[ids[j] for j in ps]
            )
        )
    return ids


def handoff(p: dict[str, Any]) -> dict[str, Any]:
    """A chain of p["samples"] + 1 tasks under the daemon loop at Hermes' default interval
    (60 s, `kanban.dispatch_interval_seconds`): from a parent's completion to its child's
    agent starting."""
    interval = p.get("interval", 60.0)
    agents: list[subprocess.Popen[bytes]] = []
    with common.scratch(agents) as tmp:
        db = _home(tmp)
        conn = _connect(db)
        chain = _graph(conn, [[i - 1] if i else [] for i in range(p["samples"] + 1)])
        conn.close()  # as in drain: only Hermes' own loop and agents hold the board open
        log = Path(tmp) / "agents.jsonl"
        stop, tick_errors = threading.Event(), []
        thread = _dispatch_loop(
            db,
            interval=interval,
            max_spawn=8,
            log=log,
            stop=stop,
            tick_errors=tick_errors,
            agents=agents,
        )
        deadline = time.time() + (interval + 10) * (len(chain) + 1)
        while time.time() < deadline and "done" not in common.agent_log(log).get(chain[-1], {}):
            time.sleep(0.05)
        stop.set()
        thread.join()
        seen = common.agent_log(log)
        gaps = [
            seen[c]["start"] - seen[parent]["done"]
            for parent, c in itertools.pairwise(chain)
            if "start" in seen.get(c, {}) and "done" in seen.get(parent, {})
        ]
        return {
            "interval_s": interval,
            "samples": len(gaps),
            "median_ms": common.ms(common.median(gaps)) if gaps else None,
            "max_ms": common.ms(max(gaps)) if gaps else None,
            "tick_errors": len(tick_errors),
            "tick_error_sample": sorted(set(tick_errors))[:3],
            "agent_error_sample": sorted({t["error"] for t in seen.values() if "error" in t})[:3],
        }


def drain(p: dict[str, Any]) -> dict[str, Any]:
    """p["cards"] tasks in p["chains"] chains, eight workers, the daemon loop at
    p["interval"]; measured until all are done or p["window"] seconds have passed."""
    interval, window = p.get("interval", 60.0), p.get("window", 3600.0)
    agents: list[subprocess.Popen[bytes]] = []
    with common.scratch(agents) as tmp:
        db = _home(tmp)
        conn = _connect(db)
        ids = _graph(conn, common.drain_graph(p["cards"], p["chains"]))
        conn.close()
        log = Path(tmp) / "agents.jsonl"
        stop, tick_errors = threading.Event(), []
        start = time.time()
        thread = _dispatch_loop(
            db,
            interval=interval,
            max_spawn=p["workers"],
            log=log,
            stop=stop,
            tick_errors=tick_errors,
            agents=agents,
            nocheck=_nocheck(p),
        )
        # A board that stops moving (Hermes refuses a corrupt database) ends the run early.
        patience = max(3 * interval, 30.0)
        progress, last_change = 0, time.time()
        while time.time() - start < window and time.time() - last_change < patience:
            done = [c for c, t in common.agent_log(log).items() if "done" in t]
            if len(done) == len(ids):
                break
            if len(done) != progress:
                progress, last_change = len(done), time.time()
            time.sleep(0.1)
        stop.set()
        thread.join()
        seen = common.agent_log(log)
        done_at = sorted(t["done"] for t in seen.values() if "done" in t)
        elapsed = (done_at[-1] if len(done_at) == len(ids) else time.time()) - start
        return {
            "cards": len(ids),
            "done": len(done_at),
            "workers": p["workers"],
            "interval_s": interval,
            "seconds": round(elapsed, 2),
            "per_minute": round(len(done_at) * 60 / elapsed, 1),
            "complete": len(done_at) == len(ids),
            "stalled": len(done_at) < len(ids) and time.time() - last_change >= patience,
            "tick_errors": len(tick_errors),
            "tick_error_sample": sorted(set(tick_errors))[:3],
            "agent_errors": sum(1 for t in seen.values() if "error" in t),
            "agent_error_sample": sorted({t["error"] for t in seen.values() if "error" in t})[:3],
        }


def memory(_: dict[str, Any]) -> dict[str, Any]:
    return {
        "per_card_uss_mb": None,
        "note": (
            "no supervisor process: the dispatcher starts the worker (`hermes -p PROFILE`) "
            "directly and the gateway watches its pid, so the only per-card process is the agent"
        ),
    }


def cli(p: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        hermes = str(Path(sys.executable).parent / "hermes")
        env = common.environ(HERMES_HOME=tmp)
        env.pop("HERMES_KANBAN_DB", None)
        return common.cli_startup(
            {
                "add": [hermes, "kanban", "create", "a card for the start-up figure"],
                "status": [hermes, "kanban", "stats"],
            },
            env=env,
            cwd=Path(tmp),
            samples=p["samples"],
        )


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
}

if __name__ == "__main__":
    raise SystemExit(common.main(MEASURES))
