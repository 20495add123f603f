"""Processes: start one in its own session and process group, know it again by its identity,
stop its whole group and confirm it is gone.

Identity (design invariant 6) is (host, pid, start time): a pid alone may have been reused by
an unrelated process, so nothing is signalled unless its start time matches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, Protocol

from kanban import errors

if TYPE_CHECKING:
    import psutil  # imported where used: `kanban status` checks a pid without it (~40 ms)

logger = logging.getLogger(__name__)

State = Literal["alive", "zombie", "gone", "replaced"]


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    pid: int
    started: float  # psutil create_time(): seconds since the epoch

    @classmethod
    def of(cls, pid: int) -> Identity:
        found = _proc_stat(pid)
        if found is not None:
            return cls(pid=pid, started=found[0])
        import psutil

        return cls(pid=pid, started=psutil.Process(pid).create_time())


def state(identity: Identity) -> State:
    """What became of the process we started: still running, exited but not reaped, gone,
    or its pid now belongs to another process."""
    try:
        found = _proc_stat(identity.pid)
    except ProcessLookupError:
        return "gone"
    if found is not None:
        started, zombie = found
    else:
        import psutil

        try:
            proc = psutil.Process(identity.pid)
            started = proc.create_time()
            zombie = proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
        except psutil.NoSuchProcess:
            return "gone"
        except psutil.AccessDenied:
            return "alive"  # it exists; we cannot look closer
    if abs(started - identity.started) > 0.05:
        return "replaced"
    if zombie:
        return "zombie"
    return "alive"


_BOOT_TIME: list[float] = []


def _proc_stat(pid: int) -> tuple[float, bool] | None:
    """(start time in seconds since the epoch, zombie or dead) of `pid` from Linux's /proc,
    computed as psutil computes `create_time()` (boot time + start ticks / CLK_TCK), so the
    two agree; None where there is no /proc (psutil answers then). ProcessLookupError: no
    such process."""
    if pid <= 0:
        raise ProcessLookupError(pid)
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read()
    except FileNotFoundError:
        if not os.path.isdir("/proc/self"):
            return None
        raise ProcessLookupError(pid) from None
    except OSError:
        return None
    fields = text[text.rindex(b")") + 2 :].split()  # after "pid (comm) "; comm may hold ")"
    if not _BOOT_TIME:
        with open("/proc/stat", "rb") as handle:
            for line in handle:
                if line.startswith(b"btime"):
                    _BOOT_TIME.append(float(line.split()[1]))
                    break
        if not _BOOT_TIME:
            return None
    started = float(fields[19]) / os.sysconf("SC_CLK_TCK") + _BOOT_TIME[0]
    return started, fields[0] in (b"Z", b"X", b"x")


def is_running(identity: Identity) -> bool:
    return state(identity) == "alive"


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout: IO[bytes] | int | None = subprocess.DEVNULL,
    stdin: int | None = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Start `argv` (never through a shell) as the leader of a new session and process group."""
    try:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout not in (None, subprocess.DEVNULL) else stdout,
            start_new_session=True,
            close_fds=True,
        )
    except FileNotFoundError as exc:
        if not Path(cwd).is_dir():
            raise errors.SpawnError(f"cannot start {argv[0]!r}: no directory {cwd}") from exc
        raise errors.ProgramMissing(
            f"command not found: {argv[0]!r} (not on PATH, nor a file in {cwd}; a script must "
            "be committed to the repository)"
        ) from exc
    except PermissionError as exc:
        raise errors.ProgramMissing(
            f"cannot execute {argv[0]!r}: {exc.strerror} (make it executable: "
            f"`chmod +x {argv[0]}`, and commit that)"
        ) from exc
    except OSError as exc:
        raise errors.SpawnError(f"cannot start {argv[0]!r}: {exc}") from exc


def group_members(pgid: int) -> list[psutil.Process]:
    import psutil

    members = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError, OSError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def _group_is_ours(identity: Identity) -> bool:
    """The process group led by `identity` still belongs to the process we started.

    If the leader's pid now names another process, its group id is no longer ours. If the
    leader exited, the group id cannot be reused while any member lives, so members left
    behind (an agent's children) are still ours.
    """
    current = state(identity)
    if current == "replaced":
        try:
            return os.getpgid(identity.pid) != identity.pid
        except OSError:
            return False
    return True


def kill_group(identity: Identity, *, grace: float = 5.0) -> bool:
    """SIGTERM the process group led by `identity`, SIGKILL what is left after `grace`
    (at once when `grace` is 0), and return True once no member remains. Never signals a
    group that is not ours."""
    pgid = identity.pid
    if not _group_is_ours(identity):
        logger.warning("pid %s was reused by another process; not signalling it", pgid)
        return True
    steps = (
        [(signal.SIGKILL, 5.0)] if grace <= 0 else [(signal.SIGTERM, grace), (signal.SIGKILL, 5.0)]
    )
    for sig, wait in steps:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            logger.warning("not allowed to signal process group %s", pgid)
            return False
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_members(pgid):
                return True
            time.sleep(0.05)
    return not group_members(pgid)


# A supervisor that was not our child (forked by kanban.forkserver) whose exit code nobody
# could tell us: its fork server had gone (the supervisors' log has it).
UNKNOWN_EXIT = -1000


def exit_description(returncode: int) -> str:
    if returncode == UNKNOWN_EXIT:
        return "exit code not known: see the supervisors' log"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exit code {returncode}"


class Spawner(Protocol):
    """How the dispatcher starts a supervisor (a real process, or a fake in tests)."""

    def start(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path
    ) -> subprocess.Popen[bytes]: ...


# Handed to a supervisor on its standard input (one JSON line), never in its environment,
# where its agent could read them (/proc/<pid>/environ before the supervisor hardens itself).
PRIVATE_VARS = ("KANBAN_TOKEN", "KANBAN_DB")


class RealSpawner:
    def start(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path
    ) -> subprocess.Popen[bytes]:
        import json

        from kanban import fsutil

        private = {k: env[k] for k in PRIVATE_VARS if k in env}
        public = {k: v for k, v in env.items() if k not in PRIVATE_VARS}
        with fsutil.append_private(log) as out:
            child = spawn(argv, cwd=cwd, env=public, stdout=out, stdin=subprocess.PIPE)
        assert child.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            child.stdin.write(json.dumps(private).encode() + b"\n")
        child.stdin.close()
        return child
