"""Retries name what is transient, are bounded, and run the whole unit again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy.exc

from kanban import errors, retrying

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


# ------------------------------------------------------------- what is transient, for real


def _pg_error(postgres_url: str, sql: str) -> BaseException:
    engine = sqlalchemy.create_engine(postgres_url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(sql)
    except sqlalchemy.exc.DBAPIError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError(f"{sql} raised nothing")


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_postgres_lost_connections_and_statement_timeouts_are_transient(
    postgres_url: str,
) -> None:
    terminated = _pg_error(postgres_url, "SELECT pg_terminate_backend(pg_backend_pid())")
    timed_out = _pg_error(postgres_url, "SET statement_timeout = 50; SELECT pg_sleep(1)")
    assert retrying.is_transient_db_error(terminated), terminated
    assert retrying.is_transient_db_error(timed_out), timed_out
    # ... and a kanban DatabaseError wrapping one is judged by what it wraps.
    wrapped = errors.DatabaseError("database error")
    wrapped.__cause__ = timed_out
    assert retrying.is_transient_db_error(wrapped)
    syntax = _pg_error(postgres_url, "SELEC 1")
    assert not retrying.is_transient_db_error(syntax)


def test_a_full_sqlite_disk_is_transient(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "b.db")
    con.execute("CREATE TABLE t (x)")
    con.execute("PRAGMA max_page_count = 2")  # what a full disk answers: SQLITE_FULL
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'b.db'}")
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA max_page_count = 2")
        with pytest.raises(sqlalchemy.exc.OperationalError) as caught:
            conn.exec_driver_sql("INSERT INTO t VALUES (randomblob(100000))")
    engine.dispose()
    con.close()
    assert retrying.is_transient_db_error(caught.value), caught.value


def test_patiently_waits_for_the_database_says_so_and_is_bounded() -> None:
    said: list[str] = []
    clock = iter(range(0, 1000, 10))
    calls, fn = _flaky(3)
    got = retrying.patiently(
        fn, patience=60, say=said.append, sleep=lambda _s: None, monotonic=lambda: next(clock)
    )  # type: ignore[arg-type]
    assert got == "done"
    assert len(said) == 3 and "the database did not answer (" in said[0]
    calls, fn = _flaky(100)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        retrying.patiently(
            fn, patience=30, say=said.append, sleep=lambda _s: None, monotonic=lambda: next(clock)
        )  # type: ignore[arg-type]
    assert len(calls) <= 5  # bounded by its patience (30 s of a clock at 10 s a try)
