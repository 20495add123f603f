"""`/api/events`: the board's event history as Server-Sent Events, resumable by id.

Each event goes out with its row id as the SSE id, so a browser that reconnects sends
`Last-Event-ID` and gets everything after it. The stream polls the events table (a cheap
indexed read) every `poll` seconds, so changes made anywhere (CLI, agents, other hosts)
reach the page without anything else having to notify the web server.

On PostgreSQL ids are handed out at insert and committed in any order: a transaction holding
id 10 may commit after one holding id 11. The cursor keeps such holes open for a while and
delivers a late event when it shows up, instead of skipping it for good.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import StreamingResponse

from kanban import api, board, errors, termtext, views

HOLE_WAIT = 10.0  # seconds a missing id may still commit and be delivered late
KEEPALIVE = 15.0


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
    board_: api.Board, cursor: Cursor, *, poll: float, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[str]:
    yield "retry: 1000\n\n"
    quiet_since = clock()
    while True:
        rows = await anyio.to_thread.run_sync(_read_after, board_, cursor.floor())
        for event in cursor.fresh(rows, now=clock()):
            quiet_since = clock()
            yield encode(event)
        if clock() - quiet_since > KEEPALIVE:
            quiet_since = clock()
            yield ": still here\n\n"
        await anyio.sleep(poll)


def response(request: Request, board_: api.Board, *, poll: float) -> StreamingResponse:
    cursor = Cursor(start_id(request, board_))
    return StreamingResponse(
        stream(board_, cursor, poll=poll),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
