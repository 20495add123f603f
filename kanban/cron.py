"""Cron expressions as crontab(5) reads them, evaluated by APScheduler 3's CronTrigger.

Pure: which fire times are due between two moments, the next fire, `--at` times. Two
crontab rules that APScheduler 3 does differently are translated here:

- day of week: crontab counts 0 (or 7) = Sunday, 1 = Monday...; APScheduler counts
  0 = Monday. Numbers are turned into day names, so `1-5` means Monday to Friday.
- day of month *and* day of week restricted (neither starts with `*`): crontab fires when
  either matches; APScheduler would want both. Such a spec becomes an OrTrigger of two.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import zoneinfo
from typing import Any

from kanban import errors
from kanban.states import CatchUp

# A fire is on time for this long after its moment (a dispatcher ticking every minute, or
# system cron calling `dispatch --once`, is never that late); later it was missed, and the
# schedule's catch-up policy decides.
GRACE = dt.timedelta(minutes=5)
MAX_CATCH_UP = 100  # fires made at once by `--catch-up all` (the most recent ones)

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering, 0..6
_HELP = (
    "write five fields, minute hour day-of-month month day-of-week (e.g. '0 9 * * 1-5'), "
    "or @hourly, @daily, @weekly, @monthly, @yearly"
)


@dataclasses.dataclass(frozen=True)
class Cron:
    spec: str
    zone: zoneinfo.ZoneInfo
    trigger: Any  # CronTrigger or OrTrigger

    def next_after(self, moment: dt.datetime) -> dt.datetime | None:
        """The first fire strictly after `moment` (UTC), or None if it never fires again."""
        found = self.trigger.get_next_fire_time(None, moment + dt.timedelta(microseconds=1))
        return found.astimezone(dt.UTC) if found is not None else None


def zone(name: str) -> zoneinfo.ZoneInfo:
    text = name.strip()
    if text.upper() == "UTC":
        text = "UTC"
    try:
        if not text or text.startswith(("/", ".")):
            raise ValueError(text)
        return zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise errors.ScheduleError(
            f"unknown time zone {name!r}; use an IANA name such as UTC, Europe/Paris "
            "or America/New_York"
        ) from None


def parse(spec: str, tz: str = "UTC") -> Cron:
    """A checked cron expression in time zone `tz`; ScheduleError says what is wrong."""
    where = zone(tz)
    text = " ".join(spec.split())
    fields = ALIASES.get(text.lower(), text).split(" ")
    if len(fields) != 5:
        raise errors.ScheduleError(
            f"malformed cron expression {spec!r}: it has {len(fields)} field(s); {_HELP}"
        )
    minute, hour, day, month, weekday = fields
    # Imported here: every board verb module imports this one, and most commands never
    # parse a cron expression (APScheduler costs `kanban status` ~15 ms to import).
    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger

    try:
        days = _weekdays(weekday)
        parts = {"minute": minute, "hour": hour, "month": month, "timezone": where}
        if day.startswith("*") or weekday.startswith("*"):
            trigger: Any = CronTrigger(day=day, day_of_week=days, **parts)
        else:  # crontab: either the day of month or the day of week
            trigger = OrTrigger(
                [
                    CronTrigger(day=day, day_of_week="*", **parts),
                    CronTrigger(day="*", day_of_week=days, **parts),
                ]
            )
    except ValueError as exc:
        raise errors.ScheduleError(f"malformed cron expression {spec!r}: {exc}; {_HELP}") from None
    return Cron(spec=text, zone=where, trigger=trigger)


_FULL_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


def _day_number(token: str) -> int:
    """0-7 (0 and 7 are Sunday) or a day name, as crontab numbers them."""
    lowered = token.lower()
    if lowered in DAYS:
        return DAYS.index(lowered)
    if lowered in _FULL_DAYS:
        return _FULL_DAYS.index(lowered)
    if token.isdigit() and int(token) <= 7:
        return int(token)
    raise ValueError(f"day of week {token!r} is not 0-7 or a day name")


def _weekdays(field: str) -> str:
    """A crontab day-of-week field as APScheduler day names (`1-5` -> `mon,tue,...,fri`)."""
    if field == "*":
        return "*"
    chosen: set[int] = set()
    for item in field.split(","):
        match = re.fullmatch(r"([^/]+)(?:/(\d+))?", item)
        if match is None:
            raise ValueError(f"day of week {item!r} is malformed")
        base, step_text = match.groups()
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"day of week step {step} must be at least 1")
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            low, high = base.split("-", 1)
            first, last = _day_number(low), _day_number(high)
            if first > last:
                raise ValueError(f"day of week range {base!r} runs backwards")
        else:
            first = _day_number(base)
            last = 6 if step_text else first
        chosen |= {n % 7 for n in range(first, last + 1, step)}
    return ",".join(DAYS[n] for n in sorted(chosen))


def fires_between(
    cron: Cron, lower: dt.datetime, upper: dt.datetime, *, limit: int
) -> list[dt.datetime]:
    """The latest `limit` fire times in (lower, upper], oldest first. Walks back from
    `upper` in growing windows, so a long gap costs little."""
    if upper <= lower or limit < 1:
        return []
    span = dt.timedelta(hours=1)
    while True:
        start = max(lower, upper - span)
        found: list[dt.datetime] = []
        moment = cron.next_after(start)
        while moment is not None and moment <= upper:
            found.append(moment)
            moment = cron.next_after(moment)
        if len(found) >= limit or start == lower:
            return found[-limit:]
        span *= 16


def due(
    cron: Cron,
    *,
    catch_up: CatchUp,
    since: dt.datetime,
    now: dt.datetime,
    grace: dt.timedelta = GRACE,
) -> list[dt.datetime]:
    """The fire times to act on at `now`, given every fire up to `since` was dealt with.

    On-time fires (at most `grace` late) are always due. Of the missed ones, `none` keeps
    none, `latest` the most recent fire, `all` each (the latest MAX_CATCH_UP)."""
    if catch_up is CatchUp.NONE:
        return fires_between(cron, max(since, now - grace), now, limit=MAX_CATCH_UP)
    limit = 1 if catch_up is CatchUp.LATEST else MAX_CATCH_UP
    return fires_between(cron, since, now, limit=limit)


# ---------------------------------------------------------------------------- --at TIME


@dataclasses.dataclass(frozen=True)
class At:
    """`dispatch --at`: an instant, or a wall-clock time read in each schedule's own zone."""

    instant: dt.datetime | None = None
    wall: dt.time | None = None
    day: dt.date | None = None  # None: today in the schedule's zone

    def moment(self, where: zoneinfo.ZoneInfo, now: dt.datetime) -> dt.datetime:
        if self.instant is not None:
            return self.instant
        assert self.wall is not None
        day = self.day or now.astimezone(where).date()
        return dt.datetime.combine(day, self.wall, tzinfo=where).astimezone(dt.UTC)


def parse_at(text: str) -> At:
    """HH:MM[:SS] (today), or ISO-8601: with an offset or Z an instant, without one a wall
    time in each schedule's zone."""
    value = text.strip()
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", value):
            hour, minute, *second = (int(part) for part in value.split(":"))
            return At(wall=dt.time(hour, minute, second[0] if second else 0))
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise errors.UsageError(
            f"--at {text!r} is not a time: give HH:MM[:SS] (today, in each schedule's zone) "
            "or an ISO-8601 date-time such as 2026-03-02T09:00:30Z"
        ) from None
    if parsed.tzinfo is not None:
        return At(instant=parsed.astimezone(dt.UTC))
    return At(wall=parsed.time(), day=parsed.date())
