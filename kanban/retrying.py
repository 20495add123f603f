"""What is transient, and how long to wait for it. Every retry in kanban goes through here.

Waits are real in production and switched off by `set_testing(True)` (the test suite does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy.exc
import tenacity

logger = logging.getLogger(__name__)
T = TypeVar("T")

_testing = False


def set_testing(on: bool) -> None:
    global _testing
    _testing = on


def is_transient_db_error(exc: BaseException) -> bool:
    """SQLite busy/locked past the busy timeout; PostgreSQL serialization failure or deadlock."""
    if not isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.DBAPIError):
        return False
    text = str(getattr(exc, "orig", exc)).lower()
    if (
        "database is locked" in text
        or "database is busy" in text
        or "database table is locked" in text
    ):
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return sqlstate in {"40001", "40P01"}


def is_git_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return "index.lock" in text or ".lock': File exists" in text or "cannot lock ref" in text


def _wait(retry_state: tenacity.RetryCallState) -> float:
    if _testing:
        return 0.0
    return float(tenacity.wait_exponential_jitter(initial=0.05, max=2.0)(retry_state))


def _log(retry_state: tenacity.RetryCallState) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    logger.warning("transient error, attempt %d: %s", retry_state.attempt_number, exc)


def database(fn: Callable[[], T], *, attempts: int = 8) -> T:
    """Run `fn` (one whole transaction) again while it fails on a transient database error."""
    retryer = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient_db_error),
        stop=tenacity.stop_after_attempt(attempts),
        wait=_wait,
        before_sleep=_log,
        reraise=True,
    )
    return retryer(fn)


def git(fn: Callable[[], T], *, attempts: int = 6) -> T:
    """Run a git operation again while another git process holds a lock file."""
    retryer = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_git_lock_error),
        stop=tenacity.stop_after_attempt(attempts),
        wait=_wait,
        before_sleep=_log,
        reraise=True,
    )
    return retryer(fn)
