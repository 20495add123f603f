"""Fakes and factories for tests (ours and yours). Only the expensive edges are faked:
an agent is a small script that behaves like one, and the model behind a real agent is
`ScriptedModel` (kanban.scripted_model). Databases, git and processes are real."""

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

__all__ = [
    "FakeAgent",
    "FakeClock",
    "FakeRunner",
    "FakeWorkspaces",
    "ScriptedModel",
    "point_agent",
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

FAST = {
    "KANBAN_HEARTBEAT_INTERVAL": "0.2",
    "KANBAN_LEASE_TTL": "5",
    "KANBAN_BACKOFF_BASE": "0.1",
    "KANBAN_BACKOFF_CAP": "0.5",
}


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


def kanban_process(
    repo: Path, *args: str, env: dict[str, str] | None = None, **popen: Any
) -> subprocess.Popen[str]:
    """`kanban ARGS` as a real process in `repo`, with fast settings (output piped unless
    `stdout=` says otherwise)."""
    import sys

    full_env = {**os.environ, **FAST, **(env or {})}
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.STDOUT)
    return subprocess.Popen(
        [sys.executable, "-m", "kanban", *args], cwd=repo, env=full_env, text=True, **popen
    )


def drain(repo: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120.0) -> str:
    """`kanban dispatch --drain --ok-if-blocked ARGS` in `repo` (fast settings), run to its
    end; its output (the drain's summary last). Cards that end blocked are outcomes the test
    checks itself. Raises AssertionError, with the output, when it fails or outlives
    `timeout`."""
    proc = kanban_process(repo, "dispatch", "--drain", "--ok-if-blocked", *args, env=env)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"kanban dispatch --drain ran past {timeout}s:\n{out}") from None
    if proc.returncode != 0:
        raise AssertionError(f"kanban dispatch --drain exited {proc.returncode}:\n{out}")
    return out


def kill_run_processes(board: Any) -> None:
    """SIGKILL (and SIGCONT, should a test have stopped it) the process group of every agent
    and supervisor of `board`'s runs that is still the process the run recorded: a test
    leaves no process behind, whatever it did. By identity (pid and start time), as the
    dispatcher does: this machine reuses pids within minutes, and a bare pid from a run that
    ended long ago may now lead another test's agent, or anyone's shell job."""
    import signal

    from kanban import processes

    for card in board.cards(include_archived=True):
        for run in board.runs(card.id):
            for pid, started in (
                (run.supervisor_pid, run.supervisor_started),
                (run.pid, run.pid_started),
            ):
                if not pid or started is None:
                    continue
                identity = processes.Identity(pid, started)
                if processes.state(identity) == "replaced":
                    continue  # the pid is another process's now (a gone leader's group is ours)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGCONT)
                processes.kill_group(identity, grace=0)


def wait_for(
    predicate: Any, *, timeout: float = 60.0, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Poll until `predicate()` is truthy; returns its value. Raises TimeoutError naming `what`."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


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


def board_processes(db_url: str) -> list[str]:
    """Live processes working for the board at `db_url` (dispatchers carry KANBAN_DB in their
    environment, supervisors KANBAN_BOARD, agents are their descendants), as 'pid command'
    lines."""
    import psutil

    from kanban.dispatcher import board_label

    label = board_label(db_url)
    roots, found = [], {}
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        try:
            env = proc.environ()
            if env.get("KANBAN_DB") == db_url or env.get("KANBAN_BOARD") == label:
                roots.append(proc)
        except psutil.Error:
            continue
    for proc in roots + [d for r in roots for d in _descendants(r)]:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                found[proc.pid] = f"{proc.pid} {' '.join(proc.cmdline())[:80]}"
        except psutil.Error:
            continue
    return list(found.values())


def _descendants(proc: Any) -> list[Any]:
    import psutil

    try:
        return list(proc.children(recursive=True))
    except psutil.Error:
        return []


def wait_for_quiet(db_url: str, *, timeout: float = 30.0) -> None:
    """Wait until no supervisor or agent of this board is left (they finish tidying up after
    the board itself looks drained)."""
    wait_for(
        lambda: not board_processes(db_url),
        timeout=timeout,
        interval=0.1,
        what=f"the processes of {db_url} to end: {board_processes(db_url)}",
    )


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (for a server a test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_process(
    repo: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """`kanban serve` as a real process in `repo` on a free port, answering; (process, base URL)."""
    import urllib.error
    import urllib.request

    port = free_port()
    proc = kanban_process(repo, "serve", "--port", str(port), *args, env=env)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            said = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"kanban serve exited {proc.returncode}: {said}")
        try:
            urllib.request.urlopen(f"{base}/static/board.css", timeout=1).close()  # noqa: S310  # http only
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
        return True

    wait_for(up, timeout=30, what="kanban serve to answer")
    return proc, base


# ------------------------------------------------------------------ a real webhook receiver


class Receiver:
    """A real HTTP server on 127.0.0.1 for notification tests: it records every request
    (headers and exact body) and answers as told: `answers` is consumed first (a status,
    or (status, delay seconds)), then `default`. `hold()` makes requests wait until
    `release()`; `down()` closes the port and `up()` opens the same one again."""

    def __init__(self, default: int = 200) -> None:
        import threading

        self.requests: list[tuple[dict[str, str], bytes, str]] = []
        self.answers: list[int | tuple[int, float]] = []
        self.default = default
        self.headers_out: dict[str, str] = {}
        self.drip = 0.0  # seconds between the lines of a dripped answer (0: answer at once)
        self.holding = threading.Event()  # set while a request is being held
        self._gate = threading.Event()
        self._gate.set()
        self._lock = threading.Lock()
        self.port = 0
        self._server: Any = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        import http.server
        import threading

        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner._lock:
                    owner.requests.append((dict(self.headers.items()), body, self.path))
                    answer = owner.answers.pop(0) if owner.answers else owner.default
                status, delay = answer if isinstance(answer, tuple) else (answer, 0.0)
                if not owner._gate.is_set():
                    owner.holding.set()
                    owner._gate.wait(60)
                if delay:
                    import time

                    time.sleep(delay)
                if owner.drip:  # the answer a line at a time, each line within any timeout
                    import time

                    try:
                        for line in (b"HTTP/1.1 200 OK\r\n", *[b"X-Drip: 1\r\n"] * 20):
                            self.wfile.write(line)
                            self.wfile.flush()
                            time.sleep(owner.drip)
                    except OSError:
                        pass
                    return
                try:
                    self.send_response(status)
                    for key, value in owner.headers_out.items():
                        self.send_header(key, value)
                    text = f"received {status}".encode()
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except OSError:
                    pass  # the sender gave up waiting

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def hold(self) -> None:
        self.holding.clear()
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def bodies(self) -> list[Any]:
        import json

        return [json.loads(body) for _, body, _ in self.requests]

    def close(self) -> None:
        self.release()
        self.down()
