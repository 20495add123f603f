"""Time helpers: one `now()`, durations in and out, ISO-8601 for JSON.

Code that decides anything takes `now` as an argument; only the edges call `now()`.

`now()` is the board's clock. On SQLite it is this host's clock. On PostgreSQL, where
several hosts share leases, it is the database server's: `db.transaction` measures the
server's `clock_timestamp()` against this host's monotonic clock (one round trip, at most
every `SYNC_EVERY` seconds, so once per tick or heartbeat), and `now()` is that reading plus
the monotonic time since, half the round trip corrected. Every host then stamps and compares
leases on one clock, however far its own is off (see docs/howto/several-hosts.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import threading
import time
from collections.abc import Callable

from kanban import errors

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


SYNC_EVERY = 1.0  # seconds between two readings of the database's clock, at most
SKEW_WARN = 2.0  # seconds: `kanban status` and `why` warn when a dispatcher's clock is further off
_SKEW_ENV = "KANBAN_TEST_CLOCK_SKEW"  # tests only: shift this process's own clock (seconds)


def _skew_from_env() -> dt.timedelta:
    text = os.environ.get(_SKEW_ENV, "").strip()
    try:
        return dt.timedelta(seconds=float(text)) if text else dt.timedelta(0)
    except ValueError:
        raise errors.UsageError(f"{_SKEW_ENV}={text!r}: expected seconds, like -90 or 90") from None


_local_skew: dt.timedelta | None = None


def local_now() -> dt.datetime:
    """This host's own clock (shifted by KANBAN_TEST_CLOCK_SKEW in tests)."""
    global _local_skew  # read once per process, at first use (an error reaches the CLI)
    if _local_skew is None:
        _local_skew = _skew_from_env()
    return dt.datetime.now(dt.UTC) + _local_skew


@dataclasses.dataclass(frozen=True)
class Reading:
    """The database's clock at a moment of this process's monotonic clock."""

    server: dt.datetime  # the database's time, at `mono`
    mono: float  # time.monotonic() half way through the round trip
    rtt: float  # seconds the round trip took
    offset: float  # this host's clock minus the database's, in seconds


class BoardClock:
    """The database's time, read once in a while and carried forward on the monotonic clock."""

    def __init__(self) -> None:
        self._reading: Reading | None = None
        self._lock = threading.Lock()

    @property
    def reading(self) -> Reading | None:
        return self._reading

    def now(self) -> dt.datetime:
        reading = self._reading
        if reading is None:
            return local_now()
        return reading.server + dt.timedelta(seconds=time.monotonic() - reading.mono)

    def due(self) -> bool:
        reading = self._reading
        return reading is None or time.monotonic() - reading.mono >= SYNC_EVERY

    def measure(self, ask: Callable[[], dt.datetime]) -> Reading:
        """Ask the database its time (`ask` is one round trip) and keep the reading, unless a
        recent one had a much shorter round trip (a slow answer says less about the time)."""
        local = local_now()
        t0 = time.monotonic()
        server = ask()
        t1 = time.monotonic()
        rtt = t1 - t0
        if server.tzinfo is None:
            server = server.replace(tzinfo=dt.UTC)
        offset = (local + dt.timedelta(seconds=rtt / 2) - server).total_seconds()
        reading = Reading(server=server, mono=t0 + rtt / 2, rtt=rtt, offset=offset)
        with self._lock:
            old = self._reading
            if old is None or rtt <= max(4 * old.rtt, 0.05) or t1 - old.mono > 30 * SYNC_EVERY:
                self._reading = reading
        return reading

    def offset(self) -> float | None:
        """This host's clock minus the database's (seconds); None until measured (SQLite)."""
        reading = self._reading
        return None if reading is None else reading.offset

    def reset(self) -> None:
        with self._lock:
            self._reading = None


# One per process: a process works on one board (the CLI, a dispatcher, a supervisor).
board_clock = BoardClock()


def now() -> dt.datetime:
    """The board's time: the database server's on PostgreSQL, this host's on SQLite."""
    return board_clock.now()


def offset() -> float | None:
    return board_clock.offset()


def parse_duration(text: str | float | int, *, what: str = "duration") -> float:
    """Seconds from `90`, `"90s"`, `"1.5m"`, `"2h"`, `"1h30m"`, `"250ms"`."""
    if isinstance(text, bool):
        raise errors.UsageError(f"{what}: expected a duration like 90s, 5m or 2h, got {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        cleaned = text.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", cleaned):
            seconds = float(cleaned)
        else:
            parts = _DURATION.findall(cleaned)
            if not parts or "".join(n + u for n, u in parts) != cleaned:
                raise errors.UsageError(
                    f"{what}: {text!r} is not a duration; write it like 90s, 5m, 2h or 1h30m"
                )
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds < 0 or seconds != seconds or seconds > 10 * 365 * 86400:
        raise errors.UsageError(f"{what}: {text!r} is out of range (0 to 10 years)")
    return seconds


def human(seconds: float) -> str:
    """`42s`, `3m05s`, `2h10m`, `3d4h`: short and sortable by eye."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def iso(value: dt.datetime | None) -> str | None:
    """ISO-8601 in UTC with a Z, the form every --json output uses."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
