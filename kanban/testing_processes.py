"""Real processes, servers and waits for tests: `kanban` run as a process, `kanban serve` on a
free port, a webhook receiver, polling until a condition holds, and leaving no process of a
board behind. kanban.testing re-exports every name here; the board and repository builders and
the fakes live there."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any

FAST = {
    "KANBAN_HEARTBEAT_INTERVAL": "0.2",
    "KANBAN_LEASE_TTL": "5",
    "KANBAN_BACKOFF_BASE": "0.1",
    "KANBAN_BACKOFF_CAP": "0.5",
}


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
