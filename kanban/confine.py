"""Keeping an agent to its run: the supervisor's own environment, its hardening, and stopping
every descendant of the agent when the run ends.

- `supervisor_env`: what a supervisor starts with (a few basics, the profile's allowed
  variables and the board's KANBAN_* settings), never the dispatcher's whole environment.
- `harden`: no core dumps and no /proc/<pid>/environ, mem or ptrace for other processes of the
  same user (PR_SET_DUMPABLE 0); orphaned descendants are re-parented to this process
  (PR_SET_CHILD_SUBREAPER), so a double fork or `setsid` cannot hide them from it.
- `stop_descendants`: SIGTERM, then SIGKILL, every process below this one, whatever its
  session or process group, and reap them.

See docs/security.md for what each layer stops and what it cannot.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import signal
import time
from collections.abc import Iterable, Mapping

import psutil

logger = logging.getLogger(__name__)

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
PR_SET_CHILD_SUBREAPER = 36

# What a supervisor needs of the dispatcher's environment whatever the profile: finding
# programs, a home, a locale, a temporary directory, and pushing branches over ssh.
SUPERVISOR_BASICS = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "SSH_AUTH_SOCK",
    "GIT_SSH_COMMAND",
)


TEST_KNOBS = ("KANBAN_TESTING_DIE_AT", "KANBAN_TEST_CLOCK_SKEW")


def allowed(parent: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The variables of `parent` named in `names` (a trailing * allows a prefix)."""
    env: dict[str, str] = {}
    for name in names:
        if name.endswith("*"):
            env.update({k: v for k, v in parent.items() if k.startswith(name[:-1])})
        elif name in parent:
            env[name] = parent[name]
    return env


def supervisor_env(
    parent: Mapping[str, str], *, allow: Iterable[str], settings: Mapping[str, str]
) -> dict[str, str]:
    """A supervisor's environment: the basics and `allow` from `parent`, then `settings`."""
    env = allowed(parent, (*SUPERVISOR_BASICS, *allow))
    for key in list(env):
        if key.startswith("KANBAN_"):
            del env[key]  # the board's settings below, nothing else of the dispatcher's
    env.update(settings)
    # The test suite's fault knobs (a supervisor killing itself at a phase, a skewed clock)
    # reach the supervisor as they reached it before it was scrubbed: they carry no secret.
    env.update({k: parent[k] for k in TEST_KNOBS if k in parent})
    return env


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, looked up once: `find_library` runs `ldconfig -p` (tens of ms), and a
    supervisor forked by the fork server inherits the fork server's lookup."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return None


def _prctl(option: int, value: int) -> bool:
    libc = _libc()
    return libc is not None and bool(libc.prctl(option, value, 0, 0, 0) == 0)


def harden(*, subreaper: bool = True) -> list[str]:
    """Make this process non-dumpable (and a child subreaper); return what could not be done."""
    missing = []
    if not _prctl(PR_SET_DUMPABLE, 0):
        missing.append("non-dumpable")
    if subreaper and not _prctl(PR_SET_CHILD_SUBREAPER, 1):
        missing.append("child subreaper")
    if missing:
        logger.warning("could not make this process %s", " and ".join(missing))
    return missing


def is_dumpable() -> bool:
    libc = _libc()
    return libc is not None and bool(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1)


def descendants(pid: int | None = None) -> list[psutil.Process]:
    """Every live process below `pid` (this process by default), zombies left out."""
    try:
        found = psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.Error:
        return []
    live = []
    for proc in found:
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE:
                live.append(proc)
    return live


def stop_descendants(*, grace: float = 2.0, keep: Iterable[int] = ()) -> int:
    """SIGTERM every descendant of this process (but `keep`), SIGKILL those left after
    `grace`, reap our direct children among them; return how many there were."""
    skip = set(keep)
    procs = [p for p in descendants() if p.pid not in skip]
    _stop(procs, grace)
    return len(procs)


def _stop(procs: list[psutil.Process], grace: float) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(procs):
            _reap(procs)
            time.sleep(0.05)
        if not _alive(procs):
            break
    _reap(procs)


def _alive(procs: list[psutil.Process]) -> bool:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def _reap(procs: list[psutil.Process]) -> None:
    """Collect the exit status of those that are our children (re-parented orphans)."""
    for proc in procs:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(proc.pid, os.WNOHANG)
