"""Wake the dispatcher at once when something changes, instead of at its next tick.

SQLite (one host): the dispatcher listens on a Unix datagram socket named after the board
(abstract namespace on Linux, so nothing is left on disk); writers send one byte after
they commit. Nothing listening is fine: the periodic tick is the backstop.
PostgreSQL (several hosts): writers `NOTIFY kanban_wake` inside their transaction
(delivered on commit); dispatchers `LISTEN` (see `PgListener`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import select
import socket
import sys
import tempfile
import time
from typing import Any, Protocol

import sqlalchemy as sa

logger = logging.getLogger(__name__)

CHANNEL = "kanban_wake"


def _address(db_url: str) -> str:
    digest = hashlib.sha1(db_url.encode(), usedforsecurity=False).hexdigest()[:16]
    if sys.platform.startswith("linux"):
        return f"\0kanban-{digest}"
    return os.path.join(tempfile.gettempdir(), f"kanban-{os.getuid()}-{digest}.sock")


def notify(db_url: str) -> None:
    """Tell a local dispatcher of this board to tick now (best effort, never blocks)."""
    if not db_url.startswith("sqlite"):
        return  # PostgreSQL writers NOTIFY inside their transaction (notify_sql)
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.sendto(b"w", _address(db_url))


def notify_sql(conn: sa.Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"NOTIFY {CHANNEL}")


class Listener(Protocol):
    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds; True when woken by a change."""

    def close(self) -> None: ...


class SocketListener:
    """The dispatcher's side for SQLite boards. A second dispatcher on the same board cannot
    bind the name; it falls back to polling the database's data version."""

    def __init__(self, db_url: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        address = _address(db_url)
        if not address.startswith("\0"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address)
        self.sock.bind(address)
        self.sock.setblocking(False)

    def wait(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return False
        with contextlib.suppress(BlockingIOError):
            while self.sock.recv(64):
                pass
        return True

    def close(self) -> None:
        self.sock.close()


class DataVersionListener:
    """Poll SQLite's `PRAGMA data_version`, which changes when another connection commits."""

    def __init__(self, engine: sa.Engine, interval: float = 0.25) -> None:
        self.conn = engine.connect()
        self.interval = interval
        self.version = self._read()

    def _read(self) -> int:
        return int(self.conn.exec_driver_sql("PRAGMA data_version").scalar_one())

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            current = self._read()
            if current != self.version:
                self.version = current
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self.interval, left))

    def close(self) -> None:
        self.conn.close()


class PgListener:
    """LISTEN on a dedicated psycopg connection; NOTIFYs from any host wake us.

    A lost connection (server restart, failover) is reopened on the next wait; the first wait
    after that reports a wake, since changes made meanwhile sent no NOTIFY we could hear.
    """

    def __init__(self, url: str) -> None:
        self.dsn = (
            sa.engine.make_url(url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        self.conn: Any = None
        self._connect()

    def _connect(self) -> None:
        import psycopg

        self.conn = psycopg.connect(self.dsn, autocommit=True)
        self.conn.execute(f"LISTEN {CHANNEL}")

    def wait(self, timeout: float) -> bool:
        import psycopg

        try:
            if self.conn is None:
                self._connect()
                logger.info("listening for wake-ups again")
                return True
            woke = False
            for _ in self.conn.notifies(timeout=max(0.0, timeout), stop_after=1):
                woke = True
            if woke:  # drain whatever else arrived at the same moment
                for _ in self.conn.notifies(timeout=0.0):
                    pass
            return woke
        except psycopg.Error as exc:
            if self.conn is not None:
                logger.warning("lost the LISTEN connection (%s); reconnecting", exc)
            self.close()
            time.sleep(max(0.0, min(timeout, 1.0)))
            return False

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None


def listen(engine: sa.Engine) -> Listener:
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "postgresql":
        return PgListener(url)
    try:
        return SocketListener(url)
    except OSError as exc:
        logger.info("another dispatcher holds the wake socket (%s); polling data_version", exc)
        return DataVersionListener(engine)
