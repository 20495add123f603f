"""What is transient, and how long to wait for it. Every retry in kanban goes through here.

The first attempt runs directly; only when it fails with something transient is tenacity
brought in (it is not imported on the happy path, which is every command's start-up).
Waits are real in production and switched off by `set_testing(True)` (the test suite does).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import sqlalchemy.exc

if TYPE_CHECKING:
    import tenacity

logger = logging.getLogger(__name__)
T = TypeVar("T")

_testing = False


def set_testing(on: bool) -> None:
    global _testing
    _testing = on


# PostgreSQL SQLSTATEs that say "try again": serialization failure and deadlock (40), the
# connection lost or refused (08), the server shutting down or restarting, or our backend
# terminated (57P01-57P03), a statement timeout or cancel (57014), a lock wait timeout
# (55P03), a full disk or no memory or too many connections (53).
_PG_TRANSIENT = frozenset(
    {"40001", "40P01", "57P01", "57P02", "57P03", "57014", "55P03", "53100", "53200", "53300"}
)
_TRANSIENT_TEXT = (
    "database is locked",  # SQLite: busy past the busy timeout
    "database is busy",
    "table is locked",
    "database or disk is full",  # SQLite: SQLITE_FULL
    "disk i/o error",  # SQLite: SQLITE_IOERR (a full disk while writing the WAL)
    "server closed the connection",  # PostgreSQL: the connection went away
    "connection refused",
    "terminating connection",
    "connection is closed",
    "the connection is lost",
    "consuming input failed",
    "could not receive data",
    "could not send data",
    "ssl syscall error",
)


def is_transient_db_error(exc: BaseException) -> bool:
    """True for a database error that a later try of the same transaction may not meet:
    SQLite busy/locked or a full disk; PostgreSQL serialization failure, deadlock, a lost
    connection or restarting server, a statement or lock timeout, a full disk. A kanban
    DatabaseError is judged by the driver error it wraps."""
    cause = exc.__cause__
    if not isinstance(exc, sqlalchemy.exc.DBAPIError) and isinstance(cause, BaseException):
        return isinstance(cause, sqlalchemy.exc.DBAPIError) and is_transient_db_error(cause)
    if not isinstance(exc, sqlalchemy.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _PG_TRANSIENT or str(sqlstate).startswith("08")
    text = str(orig if orig is not None else exc).lower()
    return any(m in text for m in _TRANSIENT_TEXT)


def is_git_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return "index.lock" in text or ".lock': File exists" in text or "cannot lock ref" in text


def _wait(retry_state: tenacity.RetryCallState) -> float:
    import tenacity

    if _testing:
        return 0.0
    return float(tenacity.wait_exponential_jitter(initial=0.05, max=2.0)(retry_state))


def _log(retry_state: tenacity.RetryCallState) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    # tenacity counts from the second try (the first ran before it was involved)
    logger.warning("transient error, attempt %d: %s", retry_state.attempt_number + 1, exc)


def _retry(fn: Callable[[], T], transient: Callable[[BaseException], bool], attempts: int) -> T:
    try:
        return fn()
    except Exception as exc:
        if not transient(exc) or attempts <= 1:
            raise
        logger.warning("transient error, attempt 1: %s", exc)
    import tenacity

    retryer = tenacity.Retrying(
        retry=tenacity.retry_if_exception(transient),
        stop=tenacity.stop_after_attempt(attempts - 1),
        wait=_wait,
        before_sleep=_log,
        reraise=True,
    )
    return retryer(fn)


def database(fn: Callable[[], T], *, attempts: int = 8) -> T:
    """Run `fn` (one whole transaction) again while it fails on a transient database error."""
    return _retry(fn, is_transient_db_error, attempts)


def patiently(
    fn: Callable[[], T],
    *,
    patience: float,
    say: Callable[[str], None],
    cap: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> T:
    """Run `fn` (a whole fenced write, itself retried by `database`) until it passes while
    the database is unreachable, full or timing out: waits grow to `cap` seconds, and the
    whole wait is bounded by `patience`. `say` is told of each wait (the run's log), so a
    supervisor that holds finished work says what it is waiting for."""
    start = monotonic()
    wait = 0.2
    tries = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            tries += 1
            waited = monotonic() - start
            if not is_transient_db_error(exc) or waited >= patience:
                raise
            pause = 0.0 if _testing else min(wait, max(0.0, patience - waited))
            say(
                f"the database did not answer ({_short(exc)}); try {tries + 1} in "
                f"{pause:.1f}s, waiting up to {patience:.0f}s in all"
            )
            sleep(pause)
            wait = min(cap, wait * 2)


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def git(fn: Callable[[], T], *, attempts: int = 6) -> T:
    """Run a git operation again while another git process holds a lock file."""
    return _retry(fn, is_git_lock_error, attempts)
