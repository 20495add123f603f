"""Schedules: cron expressions that put a card or a goal on the board at set times.

The dispatcher's schedule step (`Schedules.fire_due`) runs once per tick: for each schedule
it works out which fire times are due (`kanban.cron`, pure) and applies each in one transaction:
insert the (schedule, fire time) row under its unique constraint, then create the card or
goal. A fire that another dispatcher (or an earlier run of this one) already made is skipped.
`dispatch --once --at TIME` evaluates schedules as of TIME, to replay a missed window.

Each card or goal text may say {date}, {time} or {datetime}: the fire time in the
schedule's zone (2026-03-02, 09:00, 2026-03-02 09:00).

Reach schedules from a board as `board.schedules` (`Schedules`): `.add(spec, ...)`, `.ls()`,
`.remove(name)`, `.pause(name)`, `.run_now(name)`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import zoneinfo
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.engine import Connection

from kanban import board, clock, cron, db, errors, goals, plans, profiles, settings, views
from kanban.states import CatchUp, Overlap, ScheduleKind

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleState:
    """A schedule with what `kanban cron ls` shows beside it."""

    schedule: views.ScheduleView
    next_fire: dt.datetime | None
    last_fire: views.FireView | None

    def to_json(self) -> dict[str, Any]:
        data = self.schedule.to_json()
        data["next_fire"] = clock.iso(self.next_fire)
        data["last_fire"] = self.last_fire.to_json() if self.last_fire else None
        return data


# ---------------------------------------------------------------------- templates


def card_template(title: str, *, profile: str | None, body: str, repo: Any) -> dict[str, Any]:
    """What a card schedule makes at each fire; checked now, not at the first fire."""
    if not title.strip() or "\n" in title or len(title) > 500:
        raise errors.UsageError("--card needs a one-line title of at most 500 characters")
    if profile is not None:
        board.check_profile_name(profile)
        profiles.require(profile, repo=repo)
    return {"title": title.strip(), "profile": profile, "body": body}


def goal_template(
    objective: str,
    *,
    planner: str | None,
    plan: plans.Plan | None,
    judge: str | None,
    max_turns: int,
    auto: bool,
    repo: Any,
) -> dict[str, Any]:
    """What a goal schedule makes at each fire; the profiles and plan are checked now."""
    if not objective.strip():
        raise errors.UsageError("--goal needs an objective")
    if planner is None and plan is None:
        raise errors.UsageError("a goal schedule needs --planner PROFILE or --plan FILE")
    if not 1 <= max_turns <= 100:
        raise errors.UsageError(f"max turns {max_turns} is out of range (1 to 100)")
    for name in (planner, judge):
        if name is not None:
            profiles.require(name, repo=repo)
    return {
        "objective": objective.strip(),
        "planner": planner,
        "plan": plan.to_json() if plan else None,
        "judge": judge,
        "max_turns": max_turns,
        "auto": auto,
    }


def _fill(text: str, fire_at: dt.datetime, where: Any) -> str:
    local = fire_at.astimezone(where)
    return (
        text.replace("{datetime}", local.strftime("%Y-%m-%d %H:%M"))
        .replace("{date}", local.strftime("%Y-%m-%d"))
        .replace("{time}", local.strftime("%H:%M"))
    )


# --------------------------------------------------------------------------- a fire


def fire(
    conn: Connection,
    schedule: views.ScheduleView,
    fire_at: dt.datetime,
    *,
    now: dt.datetime,
    catalog: goals.Catalog,
    manual: bool = False,
) -> views.FireView | None:
    """Fire `schedule` for `fire_at` in the caller's transaction; None if it already fired.
    A goal's profiles come from `catalog`, read before the transaction."""
    fire_id = board.schedules.claim_fire(
        conn, schedule_id=schedule.id, fire_at=fire_at, now=now, manual=manual
    )
    if fire_id is None:
        return None
    if schedule.overlap == Overlap.SKIP and not manual:
        still_open = board.schedules.open_from_earlier_fire(
            conn, schedule_id=schedule.id, fire_id=fire_id
        )
        if still_open is not None:
            why = f"overlap: {still_open} from an earlier fire is still open"
            return board.schedules.settle_fire(conn, fire_id=fire_id, skipped=why)
    where = cron.zone(schedule.tz)
    template = schedule.template
    actor = f"cron:{schedule.name}"
    try:
        with conn.begin_nested():
            if schedule.kind == ScheduleKind.CARD:
                card, _ = board.add_card(
                    conn,
                    title=_fill(template["title"], fire_at, where),
                    body=_fill(template.get("body") or "", fire_at, where),
                    profile=template.get("profile"),
                    now=now,
                    actor=actor,
                )
                return board.schedules.settle_fire(conn, fire_id=fire_id, card_id=card.id)
            plan = template.get("plan")
            goal = goals.create(
                conn,
                catalog=catalog,
                objective=_fill(template["objective"], fire_at, where),
                planner=template.get("planner"),
                judge=template.get("judge"),
                plan=plans.check_plan(plan, known_profiles=catalog.loadable) if plan else None,
                max_turns=template.get("max_turns", goals.DEFAULT_MAX_TURNS),
                auto=bool(template.get("auto")),
                now=now,
                actor=actor,
            )
            return board.schedules.settle_fire(conn, fire_id=fire_id, goal_id=goal.id)
    except errors.KanbanError as exc:  # recorded on the fire, so it is not retried every tick
        logger.error("schedule %s could not fire for %s: %s", schedule.name, fire_at, exc.message)
        return board.schedules.settle_fire(conn, fire_id=fire_id, skipped=f"error: {exc.message}")


@dataclasses.dataclass(frozen=True, slots=True)
class Fires:
    """What the tick's schedule step did: fires made and skipped, and the next fire time."""

    fired: tuple[dict[str, Any], ...] = ()
    skipped: tuple[dict[str, Any], ...] = ()
    next_due: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"next_due": clock.iso(self.next_due)}
        if self.fired:
            data["fired"] = list(self.fired)
        if self.skipped:
            data["skipped"] = list(self.skipped)
        return data


def _fire_all(
    schedule: views.ScheduleView,
    times: list[dt.datetime],
    now: dt.datetime,
    catalog: goals.Catalog,
) -> Callable[[Connection], list[views.FireView]]:
    """One transaction for the schedule's due fires, and its mark moved past them."""

    def apply(conn: Connection) -> list[views.FireView]:
        made = [
            f for t in times if (f := fire(conn, schedule, t, now=now, catalog=catalog)) is not None
        ]
        board.schedules.advance(conn, schedule_id=schedule.id, to=times[-1], now=now)
        return made

    return apply


def _fire_json(schedule: views.ScheduleView, item: views.FireView) -> dict[str, Any]:
    return {
        "schedule": schedule.name,
        "fire_at": clock.iso(item.fire_at),
        "card": item.card_id,
        "goal": item.goal_id,
        "skipped": item.skipped,
    }


def _next(schedule: views.ScheduleView, now: dt.datetime) -> dt.datetime | None:
    if schedule.paused:
        return None
    try:
        rule = cron.parse(schedule.spec, schedule.tz)
    except errors.ScheduleError:
        return None
    return rule.next_after(max(now, schedule.last_fire_at or now))


class Schedules:
    """A board's schedules (`board.schedules`): each method is one transaction.

    board.schedules.add("0 9 * * 1-5", name="standup", kind=ScheduleKind.CARD,
                        template=schedules.card_template("Standup", ...))
    """

    def __init__(self, tx: db.Transactions, config: settings.Settings) -> None:
        self.tx = tx
        self.settings = config

    def add(
        self,
        spec: str,
        *,
        name: str,
        kind: ScheduleKind,
        template: Mapping[str, Any],
        tz: str = "UTC",
        overlap: Overlap = Overlap.SKIP,
        catch_up: CatchUp = CatchUp.LATEST,
    ) -> ScheduleState:
        rule = cron.parse(spec, tz)
        now = clock.now()
        if rule.next_after(now) is None:
            raise errors.ScheduleError(f"cron expression {spec!r} never fires; check its fields")
        made = self.tx.write(
            lambda c: board.schedules.add(
                c,
                name=name,
                spec=rule.spec,
                tz=rule.zone.key,
                kind=kind,
                template=template,
                overlap=overlap,
                catch_up=catch_up,
                now=now,
                actor=self.settings.actor,
            )
        )
        return ScheduleState(made, rule.next_after(now), None)

    def ls(self, *, now: dt.datetime | None = None) -> list[ScheduleState]:
        at = now or clock.now()

        def read(conn: Connection) -> list[ScheduleState]:
            found = []
            for item in board.schedules.list_schedules(conn):
                last = board.schedules.fires_of(conn, schedule_id=item.id, limit=1)
                found.append(ScheduleState(item, _next(item, at), last[0] if last else None))
            return found

        return self.tx.read(read)

    def remove(self, name: str) -> views.ScheduleView:
        return self.tx.write(lambda c: board.schedules.remove(c, name=name))

    def pause(self, name: str, *, paused: bool = True) -> views.ScheduleView:
        return self.tx.write(
            lambda c: board.schedules.set_paused(c, name=name, paused=paused, now=clock.now())
        )

    def run_now(self, name: str) -> views.FireView:
        """Fire `name` now, whatever its spec, pause or overlap policy say (`kanban cron run`)."""
        known = goals.catalog(self.settings.repo)

        def go(conn: Connection) -> views.FireView:
            now = clock.now()
            schedule = board.schedules.get(conn, name)
            made = fire(conn, schedule, now, now=now, catalog=known, manual=True)
            if made is None:  # the same microsecond twice: nothing to do
                raise errors.ScheduleError(f"schedule {name!r} fired at this very moment already")
            return made

        return self.tx.write(go, wake_dispatcher=True)

    # -------------------------------------------------------- the tick's schedule step

    def fire_due(self, now: dt.datetime, *, at: cron.At | None = None) -> Fires:
        """Fire every due schedule (the dispatcher's schedule step). With `at`, schedules are
        evaluated as of that time instead of `now`."""
        fired: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        next_due: dt.datetime | None = None
        known: goals.Catalog | None = None
        for schedule in self.tx.read(board.schedules.list_schedules):
            if schedule.paused:
                continue
            try:
                rule = cron.parse(schedule.spec, schedule.tz)
            except errors.ScheduleError as exc:  # e.g. the zone left the system's tz database
                logger.error("schedule %s: %s", schedule.name, exc.message)
                continue
            # Marks never move past the real now: a later `at` is refused up front (`check_at`).
            moment = min(at.moment(rule.zone, now), now) if at is not None else now
            mark = schedule.last_fire_at or schedule.created_at or now
            # Replaying a time at or before the mark looks at that time's window alone.
            since = mark if moment > mark else moment - cron.GRACE
            times = cron.due(rule, catch_up=CatchUp(schedule.catch_up), since=since, now=moment)
            if times:
                known = known or goals.catalog(self.settings.repo)  # files before the write
                made = self.tx.write(_fire_all(schedule, times, now, known))
                for item in made:
                    (skipped if item.skipped else fired).append(_fire_json(schedule, item))
                mark = max(mark, times[-1])
            upcoming = rule.next_after(max(moment, mark))
            if at is None and upcoming is not None:
                next_due = upcoming if next_due is None else min(next_due, upcoming)
        return Fires(fired=tuple(fired), skipped=tuple(skipped), next_due=next_due)

    def check_at(self, at: cron.At, now: dt.datetime) -> None:
        """Refuse an `--at` later than now, before anything changes: replaying a future time
        would fire early and move the schedules' marks past the real now, silencing them."""
        zones = {"UTC": zoneinfo.ZoneInfo("UTC")}
        for schedule in self.tx.read(board.schedules.list_schedules):
            with contextlib.suppress(errors.ScheduleError):
                zones[schedule.tz] = cron.parse(schedule.spec, schedule.tz).zone
        for name, zone in zones.items():
            moment = at.moment(zone, now)
            if moment > now:
                raise errors.UsageError(
                    f"--at {clock.iso(moment)} (in {name}) is in the future "
                    f"(now {clock.iso(now)}): it replays a missed window; to fire a schedule "
                    "early use `kanban cron run NAME`"
                )
