"""What is transient, and how long to wait for it. Every retry in kanban goes through here.

The first attempt runs directly; only when it fails with something transient is tenacity
brought in (it is not imported on the happy path, which is every command's start-up).
Waits are real in production and switched off by `set_testing(True)` (the test suite does).
"""

from __future__ import annotations

import logging
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


def is_transient_db_error(exc: BaseException) -> bool:
    """SQLite busy/locked past the busy timeout; PostgreSQL serialization failure or deadlock."""
    if not isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.DBAPIError):
        return False
    text = str(getattr(exc, "orig", exc)).lower()
    if any(m in text for m in ("database is locked", "database is busy", "table is locked")):
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return sqlstate in {"40001", "40P01"}


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


def git(fn: Callable[[], T], *, attempts: int = 6) -> T:
    """Run a git operation again while another git process holds a lock file."""
    return _retry(fn, is_git_lock_error, attempts)
