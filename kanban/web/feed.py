"""`/api/events`: the board's event history as Server-Sent Events, resumable by id.

Each event goes out with its row id as the SSE id, so a browser that reconnects sends
`Last-Event-ID` and gets everything after it. Streams read the events table only when the
board changed: one `Pulse` per server watches for commits made anywhere (CLI, agents, other
hosts) and wakes every open stream at once. On SQLite it reads `PRAGMA data_version` (a
counter in shared memory that moves with every commit of another connection) every 20 ms;
on PostgreSQL the newest event id every `poll` seconds. Either way one watcher serves all open
pages, and a stream also reads every second on its own, whatever the watcher says.

On PostgreSQL ids are handed out at insert and committed in any order: a transaction holding
id 10 may commit after one holding id 11. The cursor keeps such holes open for a while and
delivers a late event when it shows up, instead of skipping it for good.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import StreamingResponse

from kanban import api, board, errors, termtext, views

HOLE_WAIT = 10.0  # seconds a missing id may still commit and be delivered late
KEEPALIVE = 15.0
SQLITE_PULSE = 0.02  # seconds between two looks at PRAGMA data_version
BACKSTOP = 1.0  # a stream reads the events table at least this often

logger = logging.getLogger(__name__)


class Pulse:
    """Wakes the open streams when the board may have changed: one watcher thread per server,
    running while at least one stream is open."""

    def __init__(self, board_: api.Board, *, poll: float) -> None:
        self.board = board_
        self.interval = SQLITE_PULSE if board_.tx.engine.dialect.name == "sqlite" else poll
        self.event: anyio.Event | None = None  # made inside the server's event loop
        self.streams = 0
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.token: Any = None

    def changed(self) -> anyio.Event:
        """The event set at the next change (take it before reading the board)."""
        if self.event is None:
            self.event = anyio.Event()
        return self.event

    def _wake(self) -> None:
        fired, self.event = self.event, anyio.Event()
        if fired is not None:
            fired.set()

    def join(self) -> None:
        with self.lock:
            self.streams += 1
            if self.thread is None:
                self.token = anyio.lowlevel.current_token()
                self.thread = threading.Thread(target=self._watch, name="kanban-pulse", daemon=True)
                self.thread.start()

    def leave(self) -> None:
        with self.lock:
            self.streams -= 1

    def _running(self) -> bool:
        with self.lock:  # the thread ends here, so a stream joining later starts a new one
            if self.streams > 0:
                return True
            self.thread = None
            return False

    def _watch(self) -> None:
        probe, close = self._probe()
        try:
            last = probe()
            while self._running():
                time.sleep(self.interval)
                try:
                    now = probe()
                except Exception as exc:  # streams still read every BACKSTOP on their own
                    logger.warning("the live view's watcher could not read the board: %s", exc)
                    continue
                if now != last:
                    last = now
                    with contextlib.suppress(RuntimeError):  # the server is shutting down
                        anyio.from_thread.run_sync(self._wake, token=self.token)
        except Exception:
            with self.lock:
                self.thread = None
            logger.exception("the live view's watcher stopped; streams read every second")
        finally:
            close()

    def _probe(self) -> tuple[Callable[[], int], Callable[[], None]]:
        if self.board.tx.engine.dialect.name == "sqlite":
            # A pool connection used raw: no BEGIN around the pragma, so it sees every commit.
            raw = self.board.tx.engine.raw_connection()
            return lambda: int(raw.cursor().execute("PRAGMA data_version").fetchone()[0]), raw.close
        return lambda: self.board.tx.read(board.history.last_event_id), lambda: None


class Cursor:
    """Which events a stream has delivered: everything up to `last`, except open holes."""

    def __init__(self, last: int) -> None:
        self.last = last
        self.holes: dict[int, float] = {}  # missing id -> when first seen missing

    def floor(self) -> int:
        return min(self.holes, default=self.last + 1) - 1

    def fresh(self, rows: Iterable[views.EventView], *, now: float) -> list[views.EventView]:
        out = []
        for row in rows:
            if row.id > self.last:
                self.holes.update((i, now) for i in range(self.last + 1, row.id))
                self.last = row.id
                out.append(row)
            elif self.holes.pop(row.id, None) is not None:
                out.append(row)
        self.holes = {i: t for i, t in self.holes.items() if now - t < HOLE_WAIT}
        return out


def start_id(request: Request, board_: api.Board) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("after")
    if raw is None:
        return board_.tx.read(board.history.last_event_id)
    if not raw.strip().isdigit():
        raise errors.UsageError(f"Last-Event-ID is an event id like 120, not {raw!r}")
    return int(raw)


def encode(event: views.EventView) -> str:
    data = termtext.dumps(event.to_json())
    return f"id: {event.id}\ndata: {data}\n\n"


def _read_after(board_: api.Board, after_id: int) -> list[views.EventView]:
    return board_.tx.read(lambda c: board.history.events_after(c, after_id=after_id))


async def stream(
    board_: api.Board,
    cursor: Cursor,
    *,
    pulse: Pulse,
    poll: float,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[str]:
    yield "retry: 1000\n\n"
    quiet_since = clock()
    pulse.join()
    try:
        while True:
            changed = pulse.changed()  # taken before the read: a commit after it wakes us
            rows = await anyio.to_thread.run_sync(_read_after, board_, cursor.floor())
            for event in cursor.fresh(rows, now=clock()):
                quiet_since = clock()
                yield encode(event)
            if clock() - quiet_since > KEEPALIVE:
                quiet_since = clock()
                yield ": still here\n\n"
            if len(rows) >= board.history.MAX_BATCH:
                continue  # more are waiting
            # Open holes (PostgreSQL ids committed out of order) are looked at every `poll`.
            with anyio.move_on_after(poll if cursor.holes else BACKSTOP):
                await changed.wait()
    finally:
        pulse.leave()


def response(
    request: Request, board_: api.Board, *, pulse: Pulse, poll: float
) -> StreamingResponse:
    cursor = Cursor(start_id(request, board_))
    return StreamingResponse(
        stream(board_, cursor, pulse=pulse, poll=poll),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
