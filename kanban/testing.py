"""Fakes and factories for tests (ours and yours). Only the expensive edges are faked:
an agent is a small script that behaves like one, and the model behind a real agent is
`ScriptedModel` (kanban.scripted_model). Databases, git and processes are real. Running
`kanban` as a process, servers and waits are in kanban.testing_processes, re-exported here."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kanban.fakes import FakeAgent, FakeClock, FakeRunner, FakeWorkspaces
from kanban.scripted_model import ScriptedModel, point_agent
from kanban.testing_processes import (
    FAST,
    Receiver,
    board_processes,
    drain,
    free_port,
    kanban_process,
    kill_run_processes,
    pid_alive,
    serve_process,
    wait_for,
    wait_for_quiet,
)

__all__ = [
    "FAST",
    "FakeAgent",
    "FakeClock",
    "FakeRunner",
    "FakeWorkspaces",
    "Receiver",
    "ScriptedModel",
    "board_processes",
    "drain",
    "free_port",
    "kanban_process",
    "kill_run_processes",
    "pid_alive",
    "point_agent",
    "serve_process",
    "wait_for",
    "wait_for_quiet",
]  # and every name below, for tests

GIT_ENV = {
    "GIT_AUTHOR_NAME": "kanban tests",
    "GIT_AUTHOR_EMAIL": "tests@kanban.invalid",
    "GIT_COMMITTER_NAME": "kanban tests",
    "GIT_COMMITTER_EMAIL": "tests@kanban.invalid",
}


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **GIT_ENV},
    )
    return result.stdout.strip()


def git_repo(path: Path, *, branch: str = "main") -> Path:
    """A fresh repository with one commit, a README, on `branch`."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    git(path, "config", "user.name", GIT_ENV["GIT_AUTHOR_NAME"])
    git(path, "config", "user.email", GIT_ENV["GIT_AUTHOR_EMAIL"])
    (path / "README.md").write_text("# test repository\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "initial commit")
    return path


# ---------------------------------------------------------------------- PostgreSQL boards

POSTGRES_ENV = "KANBAN_TEST_POSTGRES_URL"


def schema_url(base_url: str, schema: str) -> str:
    """`base_url` with every connection's search_path set to `schema` (and named after it,
    so that `pg_stat_activity` shows which test a connection belongs to)."""
    import sqlalchemy as sa

    from kanban import db

    url = sa.engine.make_url(db.resolve_url(base_url))
    url = url.update_query_dict({"options": f"-csearch_path={schema}", "application_name": schema})
    return url.render_as_string(hide_password=False)


@contextlib.contextmanager
def postgres_schema(base_url: str, *, prefix: str = "kt") -> Iterator[str]:
    """A fresh, empty schema on the server at `base_url`; yields a board URL that uses it.

    A schema per test is much quicker than a database per test. Afterwards every connection
    still using the schema (dispatchers or supervisors a test left behind) is ended and the
    schema dropped with everything in it.
    """
    import sqlalchemy as sa

    from kanban import db

    schema = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    admin = sa.create_engine(db.resolve_url(base_url), poolclass=sa.pool.NullPool)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        yield schema_url(base_url, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name AND pid <> pg_backend_pid()"
                ),
                {"name": schema},
            )
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


def snapshot(engine: object) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every board table, for 'this changed nothing' assertions."""
    import sqlalchemy as sa

    from kanban.models import metadata

    assert isinstance(engine, sa.Engine)
    with engine.connect() as conn:
        return {
            table.name: [
                tuple(r)
                for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns))
            ]
            for table in metadata.sorted_tables
        }


def claim_until_empty(
    db: str, worker: str, out: str, go: str | None = None, complete: bool = False
) -> int:
    """Claim from the board at `db` until nothing is ready, writing one JSON line per claim
    to `out`. With `go`, wait for that file to exist first, so that several processes
    start together. Used by the concurrency tests and the claim benchmark."""
    import json
    import time

    from kanban import api

    if go is not None:
        while not os.path.exists(go):
            time.sleep(0.001)
    count = 0
    with api.open_board(db) as board, open(out, "w") as fh:
        while True:
            won = board.claim(worker=worker)
            if won is None:
                break
            if complete:
                board.complete(won.card_id, token=won.token)
            fh.write(json.dumps({"card": won.card_id, "run": won.run_id, "worker": worker}) + "\n")
            count += 1
    return count


def fire_schedules(db: str, at: str, go: str | None = None) -> int:
    """Fire the schedules of the board at `db` as of `at` (like `dispatch --once --at`) but
    without the dispatcher's tick lock, so that only the fire rows' unique constraint stands
    between racing processes. With `go`, wait for that file first. Returns the fires made."""
    import time

    from kanban import api, clock, cron

    if go is not None:
        while not os.path.exists(go):
            time.sleep(0.001)
    with api.open_board(db) as board:
        report = board.schedules.fire_due(clock.now(), at=cron.parse_at(at))
    return len(report.fired)


# ---------------------------------------------------------------------- dispatcher tests


def die_at(phases: dict[int, str]) -> dict[str, str]:
    """The environment (for a dispatcher) that makes the supervisor of card N SIGKILL itself
    on entering phase P (kanban.liveness.PHASES): a supervisor dying at each named point."""
    from kanban import liveness, supervisor

    unknown = set(phases.values()) - set(liveness.PHASES)
    assert not unknown, f"unknown phases {unknown}; known: {liveness.PHASES}"
    spec = ",".join(f"{card}:{phase}" for card, phase in phases.items())
    return {supervisor.DIE_AT_ENV: spec}


def fast_settings() -> dict[str, str]:
    """Settings for tests: beats every 0.2 s, leases of 5 s, retries after 0.1-0.5 s."""
    return {k.removeprefix("KANBAN_").lower(): v for k, v in FAST.items()}


def board_in(repo: Path, **overrides: str) -> Any:
    """The board of `repo` with fast settings (created if needed): the one its
    `.kanban/config.toml` names (see `use_board`), else `<repo>/.kanban/board.db`."""
    from kanban import api, settings

    db = overrides.pop("db", None) or configured_db(repo) or str(repo / ".kanban" / "board.db")
    config = settings.load({"db": db, **fast_settings(), **overrides}, cwd=repo)
    return api.connect(config)


def use_board(repo: Path, url: str) -> None:
    """Make `url` the board of `repo` for every command and process run in it, as
    `kanban --db URL init` does for a shared PostgreSQL board."""
    import json

    state = repo / ".kanban"
    state.mkdir(mode=0o700, exist_ok=True)
    (state / "config.toml").write_text(f"db = {json.dumps(url)}\n")
    (state / "config.toml").chmod(0o600)


def configured_db(repo: Path) -> str | None:
    import tomllib

    config = repo / ".kanban" / "config.toml"
    if not config.is_file():
        return None
    value = tomllib.loads(config.read_text()).get("db")
    return str(value) if value else None


def write_profile(repo: Path, name: str, body: str) -> Path:
    """A profile in the repository's own profiles/ directory (found before shipped ones)."""
    path = repo / "profiles" / f"{name}.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(body)
    return path


class FakeWorktrees:
    """Plain directories instead of git worktrees, for tests of code above the git layer.
    Same contract as kanban.worktrees.Worktrees (tests/test_worktrees.py runs both)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.branches: dict[str, set[str]] = {}

    def names(self, card_id: int, title: str) -> tuple[Path, str]:
        from kanban.worktrees import slug

        name = f"{card_id}-{slug(title)}"
        return self.root / name, f"kanban/{name}"

    def prepare(self, card_id: int, title: str, parents: Any, *, branch: Any = None) -> Any:
        from kanban.worktrees import Workspace

        path, own = self.names(card_id, title)
        branch = branch or own
        reused = branch in self.branches
        path.mkdir(parents=True, exist_ok=True)
        files = self.branches.setdefault(branch, set())
        for parent in parents:
            files |= self.branches.get(parent, set())
        for name in files:
            (path / name).touch()
        return Workspace(path=path, branch=branch, reused=reused)

    def commit_all(self, path: Path, message: str) -> str | None:
        branch = next(b for b in self.branches if b.endswith(path.name))
        new = {p.name for p in path.iterdir() if p.is_file()} - self.branches[branch]
        self.branches[branch] |= new
        return f"fake-{len(self.branches[branch])}" if new else None

    def is_clean(self, path: Path) -> bool:
        branch = next(b for b in self.branches if b.endswith(path.name))
        return {p.name for p in path.iterdir() if p.is_file()} <= self.branches[branch]

    def remove(self, path: Path) -> bool:
        import shutil

        if path.exists() and not self.is_clean(path):
            return False
        shutil.rmtree(path, ignore_errors=True)
        return True


# ---------------------------------------------------------------------- many runs, cheaply


class ThreadSupervisor:
    """A supervisor run in a thread of the dispatcher's own process: the same code as
    `python -m kanban.supervisor`, without a Python start-up per run. For tests with hundreds
    of runs; it answers what the dispatcher asks of a supervisor process."""

    def __init__(self, board: Any, argv: Any, token: str) -> None:
        import threading

        args = list(argv)
        self.card_id = int(args[args.index("--card") + 1])
        self.run_id = int(args[args.index("--run") + 1])
        self.pid = os.getpid()
        self.returncode: int | None = None
        self._board, self._token = board, token
        self._thread = threading.Thread(target=self._main, name=f"run-{self.run_id}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        from kanban import supervisor

        try:
            sup = supervisor.Supervisor(
                self._board, card_id=self.card_id, run_id=self.run_id, token=self._token
            )
            self.returncode = sup.run()
        except BaseException:
            self.returncode = 1
            raise

    def poll(self) -> int | None:
        return None if self._thread.is_alive() else (self.returncode or 0)

    def wait(self, timeout: float | None = None) -> int:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise subprocess.TimeoutExpired(f"run {self.run_id}", timeout or 0)
        return self.returncode or 0


class ThreadSpawner:
    """Starts each run's supervisor as a `ThreadSupervisor` on `board`."""

    def __init__(self, board: Any) -> None:
        self.board = board

    def start(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        from typing import cast

        child = ThreadSupervisor(self.board, argv, env["KANBAN_TOKEN"])
        return cast("subprocess.Popen[bytes]", child)


class ParkedSpawner:
    """Starts no process: each supervisor asked for stays parked, and checks in (as a real one
    does first thing, from its own process) when `check_in()` is called. For measuring the
    dispatcher's own work on big boards (`bench/`), where starting supervisors would measure
    them instead."""

    def __init__(self, board: Any) -> None:
        self.board = board
        self.pending: list[tuple[int, str]] = []

    def start(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        from typing import cast

        args = list(argv)
        self.pending.append((int(args[args.index("--card") + 1]), env["KANBAN_TOKEN"]))
        return cast("subprocess.Popen[bytes]", _Parked(os.getpid()))

    def check_in(self) -> None:
        """Record each parked supervisor as started (this process stands in for it)."""
        from kanban import board as verbs
        from kanban import clock, processes

        me = processes.Identity.of(os.getpid())
        for card_id, token in self.pending:
            self.board.tx.write(
                lambda c, card_id=card_id, token=token: verbs.record_start(
                    c,
                    card_id=card_id,
                    token=token,
                    now=clock.now(),
                    supervisor_pid=me.pid,
                    supervisor_started=me.started,
                )
            )
        self.pending.clear()


class _Parked:
    def __init__(self, pid: int) -> None:
        self.pid, self.returncode = pid, None

    def poll(self) -> None:
        return None


def dispatch_until_drained(max_workers: int) -> None:
    """`kanban dispatch --drain` for this process's board (KANBAN_DB, KANBAN_HOST_ID...), with
    supervisors as threads (`ThreadSpawner`). Run it as `python -c` with a host's settings."""
    import logging

    from kanban import api, dispatcher, settings

    # Warnings and errors with their level, so a test can tell an error from a notice.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with api.connect(settings.load()) as board:
        loop = dispatcher.Dispatcher(board, max_workers=max_workers, spawner=ThreadSpawner(board))
        loop.run(until=lambda _report: loop.drained())


# ---------------------------------------------------------------------- recorded agents


def replay(path: Path, *, delay: float = 0.02, exit_code: int = 0, hold: float = 0.0) -> int:
    """Behave like an agent that printed `path` (a recorded transcript): print its lines with
    `delay` seconds between them, stay alive `hold` seconds more, then exit with `exit_code`.
    Profiles run it as `{python} -m kanban.testing replay FILE`."""
    import sys
    import time

    for line in path.read_text().splitlines():
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        time.sleep(delay)
    time.sleep(hold)
    return exit_code


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kanban.testing", description=replay.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    play = commands.add_parser("replay", help="print a recorded agent transcript, then exit")
    play.add_argument("file", type=Path)
    play.add_argument("--delay", type=float, default=0.02, help="seconds between lines")
    play.add_argument("--exit", dest="exit_code", type=int, default=0, help="exit code")
    play.add_argument("--hold", type=float, default=0.0, help="seconds to stay alive after")
    args = parser.parse_args(argv)
    return replay(args.file, delay=args.delay, exit_code=args.exit_code, hold=args.hold)


if __name__ == "__main__":
    raise SystemExit(main())
