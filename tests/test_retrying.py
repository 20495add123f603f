"""Retries name what is transient, are bounded, and run the whole unit again."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy.exc

from kanban import retrying

LOCKED = sqlalchemy.exc.OperationalError(
    "UPDATE", {}, sqlite3.OperationalError("database is locked")
)


def _flaky(failures: int, error: BaseException = LOCKED) -> tuple[list[int], object]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return "done"

    return calls, fn


def test_a_transient_error_is_retried_until_it_passes() -> None:
    calls, fn = _flaky(3)
    assert retrying.database(fn) == "done"  # type: ignore[arg-type]
    assert len(calls) == 4


def test_retries_are_bounded_and_the_last_error_is_raised() -> None:
    calls, fn = _flaky(100)
    with pytest.raises(sqlalchemy.exc.OperationalError, match="database is locked"):
        retrying.database(fn, attempts=5)  # type: ignore[arg-type]
    assert len(calls) == 5


def test_anything_else_is_raised_at_once() -> None:
    calls, fn = _flaky(
        1, sqlalchemy.exc.OperationalError("x", {}, sqlite3.OperationalError("no such table"))
    )
    with pytest.raises(sqlalchemy.exc.OperationalError, match="no such table"):
        retrying.database(fn)  # type: ignore[arg-type]
    assert len(calls) == 1


def test_git_lock_errors_are_transient_for_git_only() -> None:
    err = RuntimeError("fatal: Unable to create '/r/.git/index.lock': File exists.")
    assert retrying.is_git_lock_error(err)
    assert not retrying.is_transient_db_error(err)
    calls, fn = _flaky(2, err)
    assert retrying.git(fn) == "done"  # type: ignore[arg-type]
    assert len(calls) == 3
