"""What the planner sees: the one read the tick and `kanban why` both make.

Candidates are read per profile with free capacity only, so the cost follows the work that
can start, not the size of the board. A profile's first page is its room plus a few; when the
planner (`planning.plan`, pure) leaves room on a free worker because the cards it read are
held back (their paths overlap a running card's, say), the next page is read and the plan
made again, until the room is filled, the profile's ready queue is read to its end, or
`MAX_SCAN` of its cards were read this tick. So a card that can run on a free worker is never
starved by cards held back ahead of it (tests/test_planning.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kanban import board, db, planning, profiles, sandbox, settings, views

MAX_SCAN = 1000  # ready cards read per profile and tick, at most
SLACK = 8  # a first page holds the profile's room and this many more


def read(
    tx: db.Transactions, config: settings.Settings, *, max_workers: int, now: dt.datetime
) -> planning.Snapshot:
    """The planner's snapshot of the board as of `now`, for a host with `max_workers`."""
    known, broken = profiles.load_all(repo=config.repo)  # files before the transaction
    # A profile this host cannot run (its sandbox is not installed) is never claimed here:
    # its cards stay ready for a host that can, and `kanban why` says what is missing.
    unrunnable = {
        name: problem
        for name, profile in known.items()
        if (problem := sandbox.unavailable(name, profile.sandbox)) is not None
    }

    # What the claim checks, as of `now` on this host (kanban.board.runs.claim).
    claimable = {
        "now": now,
        "host": config.host_id,
        "stale_before": now - dt.timedelta(seconds=config.lease_ttl),
    }

    def read_board(conn: Any) -> planning.Snapshot:
        running = board.running(conn)
        here = [r for r, _ in running if r.host == config.host_id]
        read: dict[str, list[views.CardView]] = {}
        more: set[str] = set()  # profiles whose ready queue may hold more than was read
        free = max_workers - len(here)
        if free > 0:
            # One grouped read of the ready queue's index says which profiles have work;
            # only those are asked for candidates (not every profile on disk).
            waiting = set(board.ready_profiles(conn))
            for name, profile in known.items():
                room = min(free, profile.concurrency - sum(1 for r in here if r.profile == name))
                if name in waiting and room > 0 and name not in unrunnable:
                    _read_page(conn, claimable, name, room + SLACK, read, more)
        while True:
            snap = planning.Snapshot(
                now=now,
                host=config.host_id,
                max_workers=max_workers,
                profiles=known,
                broken_profiles=broken,
                running=running,
                candidates=sorted(
                    (c for cards in read.values() for c in cards),
                    key=lambda c: (-c.priority, c.ready_at or now, c.id),
                ),
                max_running=config.max_running,
                truncated=frozenset(more),
                unrunnable=unrunnable,
            )
            wanted = planning.wants_more(snap, planning.plan(snap)) & more
            if not wanted:
                return snap
            for name in sorted(wanted):
                _read_page(conn, claimable, name, len(read[name]), read, more)

    return tx.read(read_board)


def _read_page(
    conn: Any,
    claimable: dict[str, Any],
    profile: str,
    size: int,
    read: dict[str, list[views.CardView]],
    more: set[str],
) -> None:
    """The next `size` claimable cards of `profile`, best first, after those read already."""
    have = read.setdefault(profile, [])
    size = max(1, min(size, MAX_SCAN - len(have)))
    page = board.ready_candidates(conn, profile=profile, limit=size, offset=len(have), **claimable)
    seen = {c.id for c in have}
    have += [c for c in page if c.id not in seen]
    if len(page) == size and len(have) < MAX_SCAN:
        more.add(profile)
    else:
        more.discard(profile)
