"""Supervisors in milliseconds: a fork server that has kanban imported forks each run's
supervisor, instead of a fresh Python importing SQLAlchemy, GitPython and kanban per run.

    python -m kanban.forkserver --fd N       (started by the dispatcher, never by hand)

The dispatcher starts one fork server as its child (`ForkSpawner`), with the scrubbed basics of
its environment (kanban.confine: no secret, no board URL, no profile variable), and talks to it
over a private socket pair. The fork server imports the supervisor and everything it uses,
opens no database connection and starts no thread, hardens itself (not dumpable), freezes its
objects out of the garbage collector (so children share its pages), and then only waits. On a
request it forks a supervisor, which

- starts a session of its own (detached as a fresh supervisor is: it survives the dispatcher
  and the fork server, and is re-parented when the fork server ends),
- takes the request's standard output (the supervisors' log), working directory and scrubbed
  environment, and the token and board from the request (never from an environment),
- resets what the fork server set (signal handlers, loggers, the random state), and
- runs `kanban.supervisor.main`, which opens its own database engine.

Its /proc/<pid>/environ is the fork server's own start-up environment (the basics), never the
dispatcher's. The fork server reaps its children and tells the dispatcher their exit codes. It
exits when the dispatcher does (the socket closes), so no fork server outlives the code that
started it: an upgraded kanban never forks old code.

Whenever the fork server is not there or fails, `ForkSpawner` starts the supervisor the old way
(`processes.RealSpawner`, a fresh Python): a claim is never lost to it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from kanban import confine, errors, fsutil, processes

logger = logging.getLogger(__name__)

READY_TIMEOUT = 30.0  # the fork server's imports, on a loaded machine
REPLY_TIMEOUT = 10.0  # one fork
GIVE_UP_AFTER = 3  # fork servers that failed before this dispatcher stops starting new ones
SUPERVISOR = "kanban.supervisor"


class ForkServerError(errors.SpawnError):
    """The fork server is not there or did not answer."""


# ---------------------------------------------------------------------- the dispatcher's side


class Forked:
    """A supervisor forked by the fork server: what the dispatcher asks of its child."""

    def __init__(self, spawner: ForkSpawner, identity: processes.Identity) -> None:
        self.pid = identity.pid
        self.identity = identity
        self.returncode: int | None = None
        self._spawner = spawner

    def poll(self) -> int | None:
        if self.returncode is None:
            code = self._spawner.exit_code(self.identity)
            if code is None and processes.state(self.identity) != "alive":
                # Exited: a zombie until the fork server reaps it (and says with what code),
                # or gone with the fork server, whose log has its exit code.
                code = self._spawner.exit_code(self.identity, wait=0.5)
                self.returncode = processes.UNKNOWN_EXIT if code is None else code
            else:
                self.returncode = code
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"supervisor {self.pid}", timeout or 0)
            time.sleep(0.05)
        return code


class ForkSpawner:
    """Starts supervisors through a fork server of this process's own; the fresh-Python
    `fallback` whenever that fails."""

    def __init__(self, *, fallback: processes.Spawner | None = None) -> None:
        self.fallback = fallback or processes.RealSpawner()
        self._held: dict[str, Any] = {}  # the server and its socket, for the finalizer
        self._buffer = b""
        self._ready = False
        self._failures = 0
        self._exits: dict[processes.Identity, int] = {}
        self._lock = threading.Lock()
        self.forked = 0  # supervisors started by the fork server
        self.fresh = 0  # and by the fallback
        # A spawner dropped without close() (a Dispatcher that never ran its loop) still lets
        # its fork server go and reaps it.
        weakref.finalize(self, ForkSpawner._drop_now, self._held)

    @property
    def _server(self) -> subprocess.Popen[bytes] | None:
        return cast("subprocess.Popen[bytes] | None", self._held.get("server"))

    @_server.setter
    def _server(self, server: subprocess.Popen[bytes] | None) -> None:
        self._held["server"] = server

    @property
    def _sock(self) -> socket.socket | None:
        return cast("socket.socket | None", self._held.get("sock"))

    @_sock.setter
    def _sock(self, sock: socket.socket | None) -> None:
        self._held["sock"] = sock

    @property
    def server_pid(self) -> int | None:
        return self._server.pid if self._server is not None else None

    def warm(self, *, cwd: Path, log: Path) -> None:
        """Start the fork server now (without waiting for it), so the first claim finds it."""
        with self._lock:
            if self._server is None and self._failures < GIVE_UP_AFTER:
                try:
                    self._launch(cwd=cwd, log=log)
                except OSError as exc:
                    self._failed(f"could not start the fork server: {exc}")

    def start(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        """Fork the supervisor `argv` (`python -m kanban.supervisor ARGS`) with `env` (its
        KANBAN_TOKEN and KANBAN_DB go in the request, not in any environment)."""
        if self._failures >= GIVE_UP_AFTER:  # said once, in _failed
            self.fresh += 1
            return self.fallback.start(argv, cwd=cwd, env=env, log=log)
        try:
            with self._lock:
                child = self._fork(list(argv), cwd=cwd, env=env, log=log)
        except (ForkServerError, OSError, ValueError) as exc:
            with self._lock:
                self._failed(str(exc))
            self.fresh += 1
            return self.fallback.start(argv, cwd=cwd, env=env, log=log)
        self.forked += 1
        return cast("subprocess.Popen[bytes]", child)  # what the dispatcher asks of one

    def exit_code(self, identity: processes.Identity, *, wait: float = 0.0) -> int | None:
        """The exit code of `identity` if the fork server reaped it (waiting up to `wait`)."""
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                if self._sock is not None:
                    with contextlib.suppress(ForkServerError, OSError, ValueError):
                        self._pump(0.0)
                if identity in self._exits:
                    return self._exits.pop(identity)
                if self._sock is None or time.monotonic() >= deadline:
                    return None
            time.sleep(0.02)

    def close(self) -> None:
        """Let the fork server go (it exits when its socket closes); its supervisors stay."""
        with self._lock:
            self._drop()

    # -- inside the lock

    def _launch(self, *, cwd: Path, log: Path) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # The fork server's environment is what every forked supervisor's /proc/PID/environ
        # shows: the scrubbed basics, nothing of the dispatcher's own and no profile's.
        env = confine.supervisor_env(os.environ, allow=(), settings={})
        try:
            with fsutil.append_private(log) as out:
                self._server = subprocess.Popen(
                    [sys.executable, "-m", __name__, "--fd", str(theirs.fileno())],
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,  # a Ctrl-C of the dispatcher's terminal is not its
                )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock, self._buffer, self._ready = ours, b"", False
        logger.debug("fork server %s starting", self._server.pid)

    def _fork(self, argv: list[str], *, cwd: Path, env: Mapping[str, str], log: Path) -> Forked:
        if not (len(argv) > 2 and argv[1:3] == ["-m", SUPERVISOR]):
            raise ValueError(f"the fork server starts supervisors only, not {argv[:3]}")
        if self._sock is None:
            self._launch(cwd=cwd, log=log)
        if not self._ready:
            self._wait_for(lambda m: m.get("ready") is True, READY_TIMEOUT, "to be ready")
            self._ready = True
        request = {
            "argv": argv[3:],
            "cwd": str(cwd),
            "log": str(log),
            "env": {k: v for k, v in env.items() if k not in processes.PRIVATE_VARS},
            "secrets": {k: env[k] for k in processes.PRIVATE_VARS if k in env},
        }
        assert self._sock is not None
        try:
            self._sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            raise ForkServerError(f"the fork server is gone: {exc}") from exc
        reply = self._wait_for(lambda m: "forked" in m or "error" in m, REPLY_TIMEOUT, "to fork")
        if "error" in reply:
            raise ForkServerError(f"the fork server could not fork: {reply['error']}")
        return Forked(self, processes.Identity(int(reply["forked"]), float(reply["started"])))

    def _wait_for(self, want: Any, timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for message in self._pump(max(0.0, deadline - time.monotonic())):
                if want(message):
                    return message
            if time.monotonic() >= deadline:
                raise ForkServerError(f"the fork server took longer than {timeout:.0f}s {what}")

    def _pump(self, timeout: float) -> list[dict[str, Any]]:
        """Read what the fork server sent (within `timeout`); keep exit notices, return the
        rest."""
        assert self._sock is not None
        ready, _, _ = select.select([self._sock], [], [], timeout)
        if ready:
            data = self._sock.recv(65536)
            if not data:
                raise ForkServerError("the fork server is gone (its socket closed)")
            self._buffer += data
        messages = []
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if "exited" in message:
                who = processes.Identity(int(message["exited"]), float(message["started"]))
                self._exits[who] = int(message["code"])
            else:
                messages.append(message)
        return messages

    def _failed(self, why: str) -> None:
        self._failures += 1
        logger.warning("%s; this supervisor starts as a fresh Python", why)
        if self._failures >= GIVE_UP_AFTER:
            logger.error(
                "the fork server failed %d times: supervisors start as fresh Pythons from now on",
                self._failures,
            )
        self._drop()

    def _drop(self) -> None:
        ForkSpawner._drop_now(self._held)
        self._ready = False

    @staticmethod
    def _drop_now(held: dict[str, Any]) -> None:
        sock, server = held.pop("sock", None), held.pop("server", None)
        if sock is not None:
            sock.close()  # the fork server exits when it sees the socket close
        if server is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=2)
            if server.poll() is None:
                server.kill()  # it is never a supervisor: nothing of a run dies with it
                server.wait()


# ---------------------------------------------------------------------- the fork server


# What a supervisor imports, so that its fork has nothing left to import; PostgreSQL's driver
# only where the `postgres` extra is installed.
PRELOAD = ("sqlalchemy.dialects.sqlite.pysqlite", "kanban.api", "kanban.board", SUPERVISOR)
PRELOAD_IF_THERE = ("psycopg", "sqlalchemy.dialects.postgresql.psycopg")


def preload() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    for name in PRELOAD_IF_THERE:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


class Server:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parent = os.getppid()
        self.buffer = b""
        self.children: dict[int, tuple[str, float]] = {}  # pid -> what it runs, start time
        # A child's exit wakes the loop at once (its exit code goes to the dispatcher).
        self.wakeup, wakeup_w = os.pipe()
        os.set_blocking(wakeup_w, False)
        self.wakeup_w = wakeup_w
        signal.set_wakeup_fd(wakeup_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def serve(self) -> int:
        self.send({"ready": True, "pid": os.getpid()})
        while True:
            readable, _, _ = select.select([self.sock.fileno(), self.wakeup], [], [], 1.0)
            if self.wakeup in readable:
                os.read(self.wakeup, 4096)
            self.reap()
            if os.getppid() != self.parent:
                return 0  # the dispatcher is gone; our supervisors are not
            if self.sock.fileno() not in readable:
                continue
            data = self.sock.recv(65536)
            if not data:
                return 0
            self.buffer += data
            *lines, self.buffer = self.buffer.split(b"\n")
            for line in lines:
                self.handle(json.loads(line))

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(json.dumps(message).encode() + b"\n")

    def handle(self, request: dict[str, Any]) -> None:
        try:
            pid = os.fork()
        except OSError as exc:
            self.send({"error": str(exc)})
            return
        if pid == 0:
            code = 70
            try:
                signal.set_wakeup_fd(-1)
                os.close(self.wakeup)
                os.close(self.wakeup_w)
                code = child(self.sock, request)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                logging.getLogger("kanban.supervisor").exception("the forked supervisor failed")
                code = 1
            finally:
                os._exit(code)
        started = processes.Identity.of(pid).started  # ours until we reap it: not reused
        self.children[pid] = (" ".join(request.get("argv", [])), started)
        self.send({"forked": pid, "started": started})

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid not in self.children:
                continue  # an orphan we adopted and stopped (below): nobody waits for it
            code = os.waitstatus_to_exitcode(status)
            what, started = self.children.pop(pid)
            if code:
                logger.warning("supervisor %s (%s) exited: %s", pid, what, code)
            self.send({"exited": pid, "started": started, "code": code})
        self.stop_orphans()

    def stop_orphans(self) -> None:
        """The fork server is a child subreaper: when a supervisor dies (even by SIGKILL)
        whatever its agent left running (a double fork, setsid, a cleared environment) is
        re-parented here, not to init. One that still carries its run's mark is left to the
        dispatcher, which finds it by the mark, stops it and says so in the run's error
        (kanban.liveness.settle); any other is stopped here (its own orphans come next, and go
        the same way)."""
        import psutil

        from kanban import liveness

        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process().children():
                if proc.pid in self.children:
                    continue
                with contextlib.suppress(psutil.Error):
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        continue
                    with contextlib.suppress(psutil.AccessDenied):
                        if liveness.MARK_ENV in proc.environ():
                            continue
                    logger.warning("stopping pid %s, left by a supervisor that died", proc.pid)
                    proc.kill()


def child(sock: socket.socket, request: dict[str, Any]) -> int:
    """In the forked process: become a fresh supervisor, then run it."""
    import random

    from kanban import supervisor

    os.setsid()
    sock.close()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    with fsutil.append_private(Path(request["log"])) as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    random.seed()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    sys.argv = [SUPERVISOR, *request["argv"]]
    try:
        code = supervisor.main(list(request["argv"]), secrets=dict(request["secrets"]))
    finally:
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kanban-forkserver", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="the dispatcher's socket")
    args = parser.parse_args(argv)
    # Not dumpable (its forks inherit that from their first step), and a child subreaper
    # (not inherited): the orphans of a supervisor that dies come here (Server.stop_orphans).
    confine.harden(subreaper=True)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s fork server %(process)d %(message)s"
    )
    sock = socket.socket(fileno=args.fd)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    preload()
    import gc

    gc.collect()
    gc.freeze()  # what is imported stays shared with every fork: the collector leaves it alone
    return Server(sock).serve()


if __name__ == "__main__":
    sys.exit(main())
