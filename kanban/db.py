"""Engines, transactions and the schema.

SQLite: WAL, a busy timeout, foreign keys on, and every write transaction opened with
`BEGIN IMMEDIATE` so that the write lock is taken up front (a deferred BEGIN that later
upgrades to a write can fail with SQLITE_BUSY that no busy timeout can fix).
PostgreSQL: psycopg 3, READ COMMITTED; claims use SKIP LOCKED (see `board.runs`).

Every command goes through `prepare()`: a new database becomes a board at the current
schema, an older board is upgraded, a newer one or a file that is not a board is refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from kanban import clock, errors, retrying, wake
from kanban.__about__ import DISTRIBUTION

T = TypeVar("T")
logger = logging.getLogger(__name__)

# The newest migration. tests/test_migrations.py fails when this and migrations/ disagree.
SCHEMA_HEAD = "0009"  # after 0005: ids were handed out per issue; the chain is what counts

BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 10
# PostgreSQL ends a session that sits inside a transaction this long without a statement: a
# host frozen mid-transaction (SIGSTOP, a paused VM, a partition) would otherwise hold its
# row locks for ever, and every other host's reclaim of its runs would wait behind them.
# kanban's transactions do no work outside the database (no side effects under the lock), so
# a live one is never idle this long; an ended one is retried whole like a lost connection.
IDLE_IN_TRANSACTION_TIMEOUT_S = 10
# A pooled PostgreSQL connection is pinged at checkout only when it sat unused this long: a
# tick's transactions follow each other within milliseconds, and a ping before each was a
# round trip in three (docs/performance.md). One that broke meanwhile fails its statement as
# a lost connection, which every transaction retries whole on a fresh one.
PING_AFTER_IDLE_S = 1.0
_PG_MIGRATION_LOCK = 0x6B616E62  # "kanb": one upgrade at a time per PostgreSQL database
_SQLITE_MAGIC = b"SQLite format 3\x00"


def resolve_url(path_or_url: str | os.PathLike[str]) -> str:
    """A SQLAlchemy URL from a path (SQLite) or a URL; `postgresql://` means psycopg 3."""
    text = os.fspath(path_or_url)
    if "://" not in text:
        return "sqlite:///" + str(Path(text).expanduser().absolute())
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    return text


def sqlite_path(url: str) -> Path | None:
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        raise errors.UsageError("an in-memory board cannot be shared with agents; give a file path")
    return Path(parsed.database)


def is_sqlite(engine_or_conn: Engine | Connection) -> bool:
    return engine_or_conn.dialect.name == "sqlite"


def create_engine(url: str, *, foreign_keys: bool = True) -> Engine:
    path = sqlite_path(url)
    if path is None:
        if not url.startswith("postgresql"):
            raise errors.UsageError(
                f"unsupported database URL {_redact(url)}: use a file path (SQLite) "
                "or postgresql+psycopg://user@host/db"
            )
        from kanban import models

        models.use_postgresql()  # the partial indexes' PostgreSQL form (see models._partial)
        try:
            # A connect timeout, unless the URL sets one: an unreachable host must fail the
            # command (or a pod's start) in seconds, not after the system's TCP timeout.
            args = {} if "connect_timeout" in url else {"connect_timeout": CONNECT_TIMEOUT_S}
            engine = sa.create_engine(url, pool_size=5, max_overflow=5, connect_args=args)
        except ImportError as exc:
            raise errors.DatabaseError(
                f"PostgreSQL needs psycopg: pip install '{DISTRIBUTION}[postgres]' "
                "(or `pip install '.[postgres]'` in a clone of kanban)"
            ) from exc

        @event.listens_for(engine, "connect")
        def _on_pg_connect(dbapi_connection: Any, _record: Any) -> None:
            # A session setting, not a startup option: transaction poolers refuse `options`.
            ms = int(IDLE_IN_TRANSACTION_TIMEOUT_S * 1000)
            with dbapi_connection.cursor() as cur:
                cur.execute(f"SET idle_in_transaction_session_timeout = {ms}")
            dbapi_connection.commit()

        @event.listens_for(engine, "checkin")
        def _on_pg_checkin(_dbapi_connection: Any, record: Any) -> None:
            record.info["kanban_idle_since"] = time.monotonic()

        @event.listens_for(engine, "checkout")
        def _on_pg_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
            # pool_pre_ping, unless the connection was in use a moment ago.
            since = record.info.get("kanban_idle_since")
            if since is not None and time.monotonic() - since < PING_AFTER_IDLE_S:
                return
            try:
                engine.dialect.do_ping(dbapi_connection)
            except Exception as exc:
                raise sa.exc.DisconnectionError(f"ping failed: {exc}") from exc

        return engine
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        dbapi_connection.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        dbapi_connection.execute("PRAGMA synchronous = NORMAL")  # safe with WAL
        mode = dbapi_connection.execute("PRAGMA journal_mode").fetchone()
        if mode is None or mode[0].lower() != "wal":
            dbapi_connection.execute("PRAGMA journal_mode = WAL")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("kanban_write", False):
            dbapi = conn.connection.dbapi_connection
            assert isinstance(dbapi, sqlite3.Connection)
            begin_immediate(dbapi)
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def begin_immediate(dbapi: sqlite3.Connection, *, timeout: float = BUSY_TIMEOUT_MS / 1000) -> None:
    """Take SQLite's write lock, waiting for it in short jittered steps.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20 ms... between tries, so when several
    processes write in turn a waiter often sleeps long after the lock came free: four
    claimer processes managed a sixth of one claimer's rate. Here we try without a busy wait
    and sleep ourselves between tries, for the same 30 s at most. Every other statement keeps
    the long busy timeout. The first pause is 1 ms, growing to 4 ms: shorter pauses let
    waiters take CPU from the holder (two cores, four claimers: 2,070 claims/s at 0.1-2 ms
    against 2,580/s at 1-4 ms, bench/), longer ones starve a waiter (the slowest claim rose
    from 70 ms to 300 ms at 5-20 ms for little more throughput).
    """
    dbapi.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            try:
                dbapi.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                    raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, exc) from exc
            time.sleep(pause * (0.5 + random.random()))  # noqa: S311 - jitter, not a secret
            pause = min(pause * 1.5, 0.004)
    finally:
        dbapi.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


@contextlib.contextmanager
def transaction(engine: Engine, *, write: bool = True) -> Iterator[Connection]:
    """One transaction; the caller's block is the unit of work. Writes take the lock up front."""
    with engine.connect() as conn:
        if write:
            conn.execution_options(kanban_write=True)
        elif not is_sqlite(conn):
            # Reads run in autocommit on PostgreSQL: under READ COMMITTED every statement
            # takes its own snapshot inside a transaction too, so BEGIN and COMMIT only cost
            # two round trips per read (docs/performance.md).
            conn.execution_options(isolation_level="AUTOCOMMIT")
        with conn.begin():
            if not is_sqlite(conn) and clock.board_clock.due():
                sync_clock(conn)
            yield conn


class Transactions:
    """The transaction runner: every verb of the library runs through `write` or `read`.

    `write(fn)` runs `fn(conn)` in one write transaction (SQLite's lock taken up front),
    retried whole on transient errors; with `wake_dispatcher` a local dispatcher is woken
    after commit (PostgreSQL: NOTIFY inside the transaction, delivered on commit). Driver
    errors leave as `DatabaseError` with the original chained.
    """

    def __init__(self, engine: Engine, *, url: str | None = None) -> None:
        self.engine = engine
        # The wake address is named after the board's URL as the settings spell it.
        self.url = url or engine.url.render_as_string(hide_password=False)
        # Write transactions this process began through us: a reader that kept an earlier
        # read knows from it whether that read may be stale (the dispatcher's tick).
        self.writes = 0

    def write(self, fn: Callable[[Connection], T], *, wake_dispatcher: bool = False) -> T:
        def attempt() -> T:
            self.writes += 1
            with transaction(self.engine, write=True) as conn:
                result = fn(conn)
                if wake_dispatcher:
                    wake.notify_sql(conn)
                return result

        result = guard(lambda: retrying.database(attempt))
        if wake_dispatcher:
            wake.notify(self.url)
        return result

    def read(self, fn: Callable[[Connection], T]) -> T:
        def attempt() -> T:
            with transaction(self.engine, write=False) as conn:
                return fn(conn)

        return guard(lambda: retrying.database(attempt))

    def wake(self) -> None:
        """Wake the board's dispatchers without writing anything (best effort)."""
        if is_sqlite(self.engine):
            wake.notify(self.url)
            return
        with contextlib.suppress(sa.exc.DBAPIError), self.engine.connect() as conn:
            conn.exec_driver_sql(f"NOTIFY {wake.CHANNEL}")
            conn.commit()


def guard(fn: Callable[[], T]) -> T:
    """Driver errors become DatabaseError with the original chained."""
    try:
        return fn()
    except errors.KanbanError:
        raise
    except sa.exc.IntegrityError as exc:
        raise errors.DatabaseError(f"the board refused a change: {exc.orig}") from exc
    except sa.exc.DBAPIError as exc:
        raise errors.DatabaseError(f"database error: {exc.orig}") from exc


def redact(url: str) -> str:
    """`url` with its password hidden, for messages."""
    return _redact(url)


def sync_clock(conn: Connection) -> clock.Reading:
    """Read the PostgreSQL server's clock into `clock.board_clock` (one round trip).
    `clock_timestamp()`, not `now()`: the latter is the transaction's start, not the moment."""
    return clock.board_clock.measure(
        lambda: conn.exec_driver_sql("SELECT clock_timestamp()").scalar_one()
    )


def _redact(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<url>"


# ---------------------------------------------------------------------------------- schema


def migrations_dir() -> Path:
    """`kanban/_migrations` in a wheel, `migrations/` beside the package in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise errors.SchemaError("kanban's migrations are missing from this installation; reinstall it")


def alembic_config(url: str | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def check_sqlite_file(path: Path) -> bool:
    """True when `path` already holds a board; False when it is new or an empty database.

    Reads the file without changing it, and refuses anything that is not a board.
    """
    if path.is_dir():
        raise errors.SchemaError(f"{path} is a directory, not a board file; point --db at a file")
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb") as fh:
        header = fh.read(16)
    if header != _SQLITE_MAGIC:
        raise errors.SchemaError(
            f"{path} is not a kanban board (not a SQLite database); left it untouched. "
            "Point --db / KANBAN_DB at a board, or at a new file to create one"
        )
    con = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True)
    try:
        tables = {
            row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    except sqlite3.DatabaseError as exc:
        raise errors.SchemaError(f"{path} cannot be read as a board: {exc}") from exc
    finally:
        con.close()
    if not tables:
        return False
    if _is_board(tables):
        return True
    shown = ", ".join(sorted(tables)[:5])
    raise errors.SchemaError(
        f"{path} is a SQLite database but not a kanban board (it has tables {shown}); "
        "left it untouched. Point --db at a board, or at a new file to create one"
    )


def _is_board(tables: set[str]) -> bool:
    """A board's tables (one downgraded to base has only alembic_version)."""
    return {"alembic_version", "cards"} <= tables or tables == {"alembic_version"}


def create_sqlite_file(path: Path) -> None:
    """Create the board file (and its directory) readable by its owner only."""
    from kanban import fsutil

    fsutil.touch_private(path)


def read_version(engine: Engine) -> str | None:
    """The board's schema revision, or None when the database has no board yet."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def _quick_version(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except sa.exc.DBAPIError:
        return None


def prepare(engine: Engine) -> None:
    """Make `engine`'s database a board at SCHEMA_HEAD, or raise SchemaError."""
    if is_sqlite(engine):
        clock.board_clock.reset()  # a SQLite board runs on this host's clock
    else:
        check_reachable(engine)
    if _quick_version(engine) == SCHEMA_HEAD:
        return
    if not is_sqlite(engine):
        _check_pg_is_board_or_empty(engine)
    upgrade(engine)


def check_reachable(engine: Engine) -> None:
    """One clear line when the database server cannot be reached (or refuses us). On the
    way, the first reading of the server's clock: nothing may run on this host's clock."""
    try:
        with engine.connect() as conn:
            sync_clock(conn)
            conn.rollback()
    except sa.exc.DBAPIError as exc:
        reason = " ".join(str(exc.orig).split()).rstrip(" .?")
        raise errors.DatabaseError(
            f"cannot reach the board at {_redact(str(engine.url))} ({reason}); check the URL "
            "(--db / KANBAN_DB), that the server is up, and that it accepts this host"
        ) from exc


def _check_pg_is_board_or_empty(engine: Engine) -> None:
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    if tables and not _is_board(tables):
        shown = ", ".join(sorted(tables)[:5])
        raise errors.SchemaError(
            f"{_redact(str(engine.url))} holds tables that are not a kanban board ({shown}); "
            "left it untouched. Use an empty database or schema"
        )


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade under the board's write lock; returns (before, after). Refuses a newer board."""
    from alembic import command
    from alembic.script import ScriptDirectory

    cfg = alembic_config()
    script = ScriptDirectory.from_config(cfg)
    known = {rev.revision for rev in script.walk_revisions()}
    url = engine.url.render_as_string(hide_password=False)
    # SQLite cannot switch foreign keys inside a transaction, and batch migrations copy tables
    # (a DROP with foreign keys on would cascade), so migrate on a connection with them off.
    mig_engine = create_engine(url, foreign_keys=False) if is_sqlite(engine) else engine
    try:
        with mig_engine.connect() as conn:
            conn.execution_options(kanban_write=True)
            with conn.begin():
                if not is_sqlite(conn):
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK}
                    )
                    # A migration may compute between statements for longer than a tick's
                    # transaction ever does (IDLE_IN_TRANSACTION_TIMEOUT_S): no limit here.
                    conn.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = 0")
                before = (
                    conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
                    if sa.inspect(conn).has_table("alembic_version")
                    else None
                )
                if before is not None and before not in known:
                    raise errors.SchemaError(
                        f"this board's schema ({before}) is newer than this kanban "
                        f"(knows up to {SCHEMA_HEAD}); upgrade kanban to use it"
                    )
                if before != revision and not (
                    revision == "head" and before == script.get_current_head()
                ):
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, revision)
                after = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
                if is_sqlite(conn):
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise errors.SchemaError(f"migration left broken references: {broken[:3]}")
    finally:
        if mig_engine is not engine:
            mig_engine.dispose()
    if before != after:
        logger.info("upgraded board schema %s -> %s", before, after)
    return before, after
