"""How the board is doing, read in one place: what `kanban status` shows and prints with
`--json`, and what the web board answers at `/api/status` (one shape for both)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from kanban import api, board, clock, profiles, views, why


@dataclasses.dataclass(frozen=True)
class Report:
    summary: views.BoardStatus
    now: dt.datetime  # the board's clock when it was read
    alive: bool  # a dispatcher heartbeats (on this host or another)
    liveness: str  # the sentence saying so
    broken_profiles: Mapping[str, str]  # profile name -> why it does not load
    dispatchers: tuple[Mapping[str, Any], ...]
    clock_warnings: tuple[str, ...]
    notifications: Mapping[str, int]  # deliveries "pending" and "dead"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = self.summary.to_json()
        data["dispatcher_alive"] = self.alive
        data["broken_profiles"] = dict(self.broken_profiles)
        data["dispatchers"] = [views.jsonable(row) for row in self.dispatchers]
        data["clock_warnings"] = list(self.clock_warnings)
        data["notifications"] = dict(self.notifications)
        return data


def report(b: api.Board) -> Report:
    summary = b.status()
    now = summary.now or clock.now()
    rows = b.tx.read(board.list_dispatchers)  # read once for the three uses below
    alive, liveness = why.dispatcher_liveness(b, now, rows=rows)
    return Report(
        summary=summary,
        now=now,
        alive=alive,
        liveness=liveness,
        broken_profiles=profiles.load_all(repo=b.settings.repo)[1],
        dispatchers=tuple(rows),
        clock_warnings=tuple(why.clock_warnings(b, now, rows=rows)),
        notifications=b.tx.read(board.outbox.outbox_counts),
    )
