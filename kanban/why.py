"""`kanban why CARD`: why a card is not running, from the same planner the dispatcher uses."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from kanban import api, board, clock, processes, views
from kanban.models import runs
from kanban.states import CardStatus

S = CardStatus
DISPATCHER_SLACK = 3.0  # a dispatcher is down when silent for 3 intervals (and 30 s)


def dispatcher_liveness(
    b: api.Board, now: dt.datetime, *, rows: list[dict[str, Any]] | None = None
) -> tuple[bool, str]:
    """(alive, the sentence saying so); `rows` from `board.list_dispatchers` when the caller
    has read them already."""
    rows = b.tx.read(board.list_dispatchers) if rows is None else rows
    host = b.settings.host_id
    alive = [
        r
        for r in rows
        if r["stopped_at"] is None
        and (now - _utc(r["heartbeat_at"])).total_seconds()
        <= DISPATCHER_SLACK * float(str(r["interval_s"])) + 30
        and not _process_gone(r, host)
    ]
    if alive:
        names = ", ".join(
            f"{r['name']} (ticked {clock.human(_age(now, r['heartbeat_at']))} ago)" for r in alive
        )
        return True, f"dispatcher alive: {names}"
    if not rows:
        return False, "no dispatcher has ever run on this board: start `kanban dispatch`"
    last = rows[0]
    state = "stopped" if last["stopped_at"] is not None else "silent"
    if last["stopped_at"] is None and _process_gone(last, host):
        state = f"exited (pid {last['pid']} is gone) after ticking"
    ago = clock.human((now - _utc(last["heartbeat_at"])).total_seconds())
    return False, (
        f"no dispatcher is running: the last one ({last['name']}) {state} "
        f"{ago} ago; start `kanban dispatch`"
    )


def _process_gone(row: Mapping[str, Any], host: str) -> bool:
    """On this host a dispatcher is alive only while its process is: same pid, same start
    time (a reused pid is another process). A `--once` dispatcher (from cron) has no lasting
    process; other hosts' dispatchers are judged by their heartbeats alone."""
    if row["host"] != host or str(row["name"]).endswith(":once"):
        return False
    started = _utc(row["started_at"]).timestamp()
    return processes.state(processes.Identity(int(row["pid"]), started)) != "alive"


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _age(now: dt.datetime, then: Any) -> float:
    return (now - _utc(then)).total_seconds()


def explain(b: api.Board, card_id: int, *, max_workers: int | None = None) -> list[str]:
    """Reasons, most important first. An empty list never happens: a claimable card says so."""
    now = clock.now()
    detail = b.show(card_id)
    card = detail.card
    reasons: list[str] = []
    if card.status != S.READY:
        reasons += _not_ready(detail, now)
        return reasons + clock_warnings(b, now)
    unfinished = [p for p in detail.parents if p.status not in ("done", "archived")]
    if unfinished:
        listed = ", ".join(f"{p.id} ({p.status})" for p in unfinished)
        reasons.append(f"a parent is not done yet: {listed}")
    if card.not_before is not None and card.not_before > now:
        last = next((r for r in reversed(detail.runs) if r.error), None)
        reasons.append(
            f"backing off until {clock.iso(card.not_before)} "
            f"(in {clock.human((card.not_before - now).total_seconds())}) after "
            f"{card.attempts} failed attempt(s)" + (f"; last error: {last.error}" if last else "")
        )
    alive, liveness = dispatcher_liveness(b, now)
    if not alive:
        reasons.append(liveness)
    # The tick's own read and decision (kanban.snapshots, planning.plan), never a second one.
    # Imported here: `kanban status` uses this module's liveness checks, not the tick's read.
    from kanban import planning, snapshots

    snap = snapshots.read(
        b.tx, b.settings, max_workers=max_workers or _live_max_workers(b), now=now
    )
    seen = card.id in {c.id for c in snap.candidates}
    if not seen:  # the tick does not read it: say why from the plan it would make with it
        snap = dataclasses.replace(snap, candidates=[*snap.candidates, card])
    plan = planning.plan(snap)
    # The claim skips a card while an earlier run's agent may be alive, whatever else holds it.
    held = _unreleased(b, card.id, now) if not seen else None
    if card.id in plan.waiting:
        reasons.append(plan.waiting[card.id])
    if held is not None:
        reasons.append(
            f"an earlier run's agent may still be alive: run {held.id} ({held.outcome}) on "
            f"{held.host} is not yet confirmed gone; it starts once that run is released"
        )
    elif not seen and not reasons:
        reasons.append(
            f"the tick does not reach it: it reads at most {snapshots.MAX_SCAN} ready cards of "
            f"profile {card.profile} a tick, and those ahead of it are all held back"
        )
    elif not reasons:
        reasons.append(
            "nothing holds it back: the next tick claims it"
            + ("" if alive else " once a dispatcher runs")
        )
    return reasons + clock_warnings(b, now)


def _unreleased(b: api.Board, card_id: int, now: dt.datetime) -> views.RunView | None:
    """An ended run of the card that the claim still waits for (board.releases.unreleased)."""
    stale = now - dt.timedelta(seconds=b.settings.lease_ttl)

    def read(conn: Any) -> views.RunView | None:
        for run in reversed(board.runs_of(conn, card_id)):
            ended = run.outcome is not None and run.supervisor_pid is not None
            if ended and _held(conn, run, b.settings.host_id, stale):
                return run
        return None

    return b.tx.read(read)


def _held(conn: Any, run: views.RunView, host: str, stale: dt.datetime) -> bool:
    released = conn.execute(sa.select(runs.c.released_at).where(runs.c.id == run.id)).scalar()
    return released is None and (run.host == host or run.lease_expires_at > stale)


def _live_max_workers(b: api.Board) -> int:
    for row in b.tx.read(board.list_dispatchers):
        tick = row.get("last_tick") or {}
        if isinstance(tick, dict) and tick.get("max_workers"):
            return int(tick["max_workers"])
    return b.settings.max_workers


def _not_ready(detail: views.CardDetail, now: dt.datetime) -> list[str]:
    card = detail.card
    if card.status == S.TODO:
        unfinished = [p for p in detail.parents if p.status not in ("done", "archived")]
        stuck = [
            p
            for p in unfinished
            if p.status in ("blocked", "review", "failed", "cancelled", "triage")
        ]
        reasons = [
            "it waits for its parents: " + ", ".join(f"{p.id} ({p.status})" for p in unfinished)
        ]
        for p in stuck:
            reasons.append(
                f"parent {p.id} needs a person: it is {p.status}"
                + (f" ({p.reason})" if p.reason else "")
            )
        return reasons
    if card.status == S.RUNNING:
        live = next((r for r in detail.runs if r.outcome is None), None)
        if live is None:
            return ["it is running"]
        beat = live.heartbeat_at or live.claimed_at
        return [
            f"it is running: run {live.id}, attempt {live.attempt}, on {live.host}"
            + (f" pid {live.pid}" if live.pid else " (starting)")
            + f", heartbeat {clock.human((now - beat).total_seconds())} ago"
        ]
    if card.status == S.BLOCKED:
        return [
            f"it is blocked: {card.reason or 'no reason given'}; `kanban unblock {card.id}` "
            "resumes it"
        ]
    if card.status == S.REVIEW:
        return [
            f"it waits for review: `kanban complete {card.id}` approves, "
            f"`kanban retry {card.id}` sends it back"
        ]
    if card.status == S.TRIAGE and card.goal_id is not None:
        return [
            f"it is part of goal {card.goal_id}'s proposed plan: "
            f"`kanban goal approve {card.goal_id}` starts the plan"
        ]
    if card.status == S.TRIAGE:
        return [f"it is in triage: `kanban retry {card.id}` accepts it"]
    return [f"it is {card.status}" + (f" ({card.reason})" if card.reason else "")]


def clock_warnings(
    b: api.Board, now: dt.datetime, *, rows: list[dict[str, Any]] | None = None
) -> list[str]:
    """One line per live dispatcher whose own clock is more than `clock.SKEW_WARN` seconds
    from the database's. Leases use the database's clock, so this is harmless for them, but
    the host's logs, cron fires in local time and its agents' tools see the wrong time."""
    warnings = []
    for row in b.tx.read(board.list_dispatchers) if rows is None else rows:
        raw = row.get("clock_offset_s")
        offset = None if raw is None else float(str(raw))
        if row["stopped_at"] is not None or offset is None or abs(offset) <= clock.SKEW_WARN:
            continue
        if _age(now, row["heartbeat_at"]) > DISPATCHER_SLACK * float(str(row["interval_s"])) + 30:
            continue
        side = "ahead of" if offset > 0 else "behind"
        warnings.append(
            f"warning: dispatcher {row['name']}'s clock is {clock.human(abs(offset))} "
            f"{side} the database's; leases use the database's clock, but fix the host's "
            "time sync (NTP/chrony)"
        )
    return warnings
