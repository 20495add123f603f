"""Cron arithmetic: crontab semantics on top of APScheduler 3, due fires per catch-up policy,
`--at` times. Pure functions: every moment is given, nothing reads the clock."""

from __future__ import annotations

import datetime as dt

import pytest

from kanban import cron, errors
from kanban.states import CatchUp


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _fires(spec: str, start: str, count: int, tz: str = "UTC") -> list[dt.datetime]:
    rule = cron.parse(spec, tz)
    moment, found = utc(start), []
    for _ in range(count):
        nxt = rule.next_after(moment)
        assert nxt is not None
        found.append(nxt)
        moment = nxt
    return found


def test_day_of_week_counts_like_crontab_not_like_apscheduler() -> None:
    # 2026-01-03 is a Saturday. In crontab 1-5 is Monday to Friday (APScheduler 3 would
    # read it as Tuesday to Saturday).
    days = [d.strftime("%a") for d in _fires("0 9 * * 1-5", "2026-01-03 00:00", 6)]
    assert days == ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon"]
    assert {d.strftime("%a") for d in _fires("0 9 * * 0", "2026-01-03 00:00", 3)} == {"Sun"}
    assert {d.strftime("%a") for d in _fires("0 9 * * 7", "2026-01-03 00:00", 3)} == {"Sun"}
    assert [d.strftime("%a") for d in _fires("0 9 * * 5-7", "2026-01-05 00:00", 3)] == [
        "Fri",
        "Sat",
        "Sun",
    ]
    assert [d.strftime("%a") for d in _fires("0 9 * * */2", "2026-01-03 12:00", 4)] == [
        "Sun",
        "Tue",
        "Thu",
        "Sat",
    ]
    assert {d.strftime("%a") for d in _fires("0 9 * * mon,FRI", "2026-01-03", 4)} == {"Mon", "Fri"}


def test_day_of_month_or_day_of_week_as_crontab_says() -> None:
    days = [d.day for d in _fires("0 0 13 * 5", "2026-02-01 00:00", 5)]
    # Fridays in February 2026 are 6, 13, 20, 27; the 13th counts once; then 6 March.
    assert days == [6, 13, 20, 27, 6]


def test_time_zones_and_daylight_saving() -> None:
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer (DST began 29 March).
    winter, summer = _fires("0 9 * * *", "2026-03-27 12:00", 2, tz="Europe/Paris")
    assert (winter.hour, summer.hour) == (8, 7)


def test_aliases_and_the_next_fire_is_strictly_after() -> None:
    rule = cron.parse("@hourly")
    assert rule.next_after(utc("2026-01-01 10:00")) == utc("2026-01-01 11:00")
    assert cron.parse("@daily").next_after(utc("2026-01-01 10:00")) == utc("2026-01-02 00:00")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("0 9 * *", "malformed cron expression '0 9 * *': it has 4 field(s)"),
        ("61 9 * * *", "malformed cron expression '61 9 * * *'"),
        ("0 9 * * 8", "day of week '8' is not 0-7 or a day name"),
        ("0 9 * * fri-mon", "runs backwards"),
        ("every day", "malformed cron expression"),
        ("0 25 * * *", "malformed cron expression"),
    ],
)
def test_malformed_expressions_are_refused_clearly(spec: str, message: str) -> None:
    with pytest.raises(errors.ScheduleError) as caught:
        cron.parse(spec)
    assert message in caught.value.message
    assert "five fields" in caught.value.message


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "../../etc/passwd", "Europe"])
def test_unknown_time_zones_are_refused_clearly(tz: str) -> None:
    with pytest.raises(errors.ScheduleError, match=r"unknown time zone .*IANA name"):
        cron.parse("0 9 * * *", tz)


def test_due_fires_per_catch_up_policy() -> None:
    hourly = cron.parse("0 * * * *")
    since, now = utc("2026-03-02 06:10"), utc("2026-03-02 09:30")
    assert cron.due(hourly, catch_up=CatchUp.ALL, since=since, now=now) == [
        utc("2026-03-02 07:00"),
        utc("2026-03-02 08:00"),
        utc("2026-03-02 09:00"),
    ]
    assert cron.due(hourly, catch_up=CatchUp.LATEST, since=since, now=now) == [
        utc("2026-03-02 09:00")
    ]
    assert cron.due(hourly, catch_up=CatchUp.NONE, since=since, now=now) == []
    # An on-time fire (within the grace period) is due under every policy.
    on_time = utc("2026-03-02 09:00:30")
    for policy in CatchUp:
        assert cron.due(hourly, catch_up=policy, since=since, now=on_time)[-1:] == [
            utc("2026-03-02 09:00")
        ]


def test_catch_up_all_is_bounded_and_keeps_the_latest() -> None:
    every_minute = cron.parse("* * * * *")
    found = cron.due(
        every_minute, catch_up=CatchUp.ALL, since=utc("2025-01-01"), now=utc("2026-01-01")
    )
    assert len(found) == cron.MAX_CATCH_UP
    assert found[-1] == utc("2026-01-01 00:00")


def test_at_times() -> None:
    now = utc("2026-03-02 23:30")
    paris = cron.zone("Europe/Paris")
    at = cron.parse_at("09:00:30")
    assert at.moment(cron.zone("UTC"), now) == utc("2026-03-02 09:00:30")
    # 23:30 UTC is already 3 March in Paris: "today" there.
    assert at.moment(paris, now) == utc("2026-03-03 08:00:30")
    assert cron.parse_at("9:05").moment(cron.zone("UTC"), now) == utc("2026-03-02 09:05")
    instant = cron.parse_at("2026-03-02T09:00:30+01:00")
    assert instant.moment(paris, now) == instant.moment(cron.zone("UTC"), now)
    assert instant.moment(paris, now) == utc("2026-03-02 08:00:30")
    wall = cron.parse_at("2026-03-02T09:00")
    assert wall.moment(paris, now) == utc("2026-03-02 08:00")
    for bad in ("9am", "25:00", "yesterday", "2026-13-01T00:00Z"):
        with pytest.raises(errors.UsageError, match="is not a time"):
            cron.parse_at(bad)
