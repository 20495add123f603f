"""Time helpers: one `now()`, durations in and out, ISO-8601 for JSON.

Code that decides anything takes `now` as an argument; only the edges call `now()`.
"""

from __future__ import annotations

import datetime as dt
import re

from kanban import errors

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
