"""Deciding what the dispatcher claims: a pure function of a snapshot of the board.

The tick and `kanban why` both call `plan()`, so the reason `why` gives for a waiting card is
the reason the tick really had.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
from collections import Counter
from collections.abc import Mapping, Sequence

from kanban import views
from kanban.profiles import Profile


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    now: dt.datetime
    host: str
    max_workers: int  # on this host
    profiles: Mapping[str, Profile]
    broken_profiles: Mapping[str, str]  # name -> why it does not load
    running: Sequence[tuple[views.RunView, views.CardView]]  # every host's live runs
    candidates: Sequence[views.CardView]  # ready and claimable now, best first
    max_running: int | None = None  # board-wide cap over all hosts (None: no cap)
    # Profiles whose ready queue holds more claimable cards than `candidates` has.
    truncated: frozenset[str] = frozenset()
    # Profiles that load but cannot run on this host (a sandbox it lacks): name -> why.
    unrunnable: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    claim: tuple[int, ...]
    waiting: Mapping[int, str]  # card id -> why it is not claimed this tick


def _prefix(glob: str) -> str:
    """The literal directory part of a glob, before its first wildcard."""
    for i, ch in enumerate(glob):
        if ch in "*?[":
            return glob[:i]
    return glob


def _is_file(path: str) -> bool:
    """A plain path whose last part has an extension (`src/a.py`, not `src` or `.github`)."""
    if path.endswith("/") or _prefix(path) != path:
        return False
    last = path.rsplit("/", 1)[-1]
    return "." in last.lstrip(".")


def paths_overlap(a: Sequence[str], b: Sequence[str]) -> bool:
    """Could a file match a glob of `a` and a glob of `b`? Conservative: when unsure, yes.
    (A plain file path against a glob is sure: the glob matches it or not.)"""
    for x in a:
        for y in b:
            if fnmatch.fnmatchcase(x, y) or fnmatch.fnmatchcase(y, x):
                return True
            if _is_file(x) or _is_file(y):
                file, other = (x, y) if _is_file(x) else (y, x)
                if _prefix(other) == other and file.startswith(other.rstrip("/") + "/"):
                    return True  # a file inside a directory
                continue  # a glob matches a file or it does not
            px, py = _prefix(x), _prefix(y)
            if px.startswith(py) or py.startswith(px):
                # Literal parts agree as far as both go: one may contain the other.
                if px == x and py == y:  # two plain paths: the same, or one inside the other
                    if (
                        x.rstrip("/") == y.rstrip("/")
                        or y.startswith(x.rstrip("/") + "/")
                        or x.startswith(y.rstrip("/") + "/")
                    ):
                        return True
                    continue
                return True
    return False


def plan(snap: Snapshot) -> Plan:
    here = [(r, c) for r, c in snap.running if r.host == snap.host]
    free = snap.max_workers - len(here)
    board_free = None if snap.max_running is None else snap.max_running - len(snap.running)
    per_profile: Counter[str | None] = Counter(r.profile for r, _ in here)
    busy_paths: list[tuple[int, tuple[str, ...]]] = [
        (c.id, c.paths) for _, c in snap.running if c.paths
    ]
    chosen: list[int] = []
    waiting: dict[int, str] = {}
    for card in snap.candidates:
        reason = _why_not(card, snap, free, board_free, per_profile, busy_paths)
        if reason is not None:
            waiting[card.id] = reason
            continue
        chosen.append(card.id)
        free -= 1
        if board_free is not None:
            board_free -= 1
        per_profile[card.profile] += 1
        if card.paths:
            busy_paths.append((card.id, card.paths))
    return Plan(claim=tuple(chosen), waiting=waiting)


def wants_more(snap: Snapshot, chosen: Plan) -> set[str]:
    """Profiles that would start more cards on this host than `chosen` does, had the snapshot
    more of their candidates: a worker stays free, the board-wide cap is not reached, and
    the profile is below its concurrency. (The reader then reads on; see kanban.snapshots.)"""
    here = [r for r, _ in snap.running if r.host == snap.host]
    if snap.max_workers - len(here) - len(chosen.claim) <= 0:
        return set()
    if snap.max_running is not None and len(snap.running) + len(chosen.claim) >= snap.max_running:
        return set()
    claimed = {c.id for c in snap.candidates if c.id in chosen.claim}
    per_profile: Counter[str | None] = Counter(r.profile for r in here)
    per_profile.update(c.profile for c in snap.candidates if c.id in claimed)
    return {name for name, p in snap.profiles.items() if per_profile[name] < p.concurrency}


def _why_not(
    card: views.CardView,
    snap: Snapshot,
    free: int,
    board_free: int | None,
    per_profile: Counter[str | None],
    busy_paths: list[tuple[int, tuple[str, ...]]],
) -> str | None:
    if card.profile is None:
        return (
            "it has no profile, so no agent can run it: "
            f"`kanban edit {card.id} --profile NAME` gives it one"
        )
    if card.profile in snap.broken_profiles:
        return f"its profile {card.profile!r} does not load: {snap.broken_profiles[card.profile]}"
    profile = snap.profiles.get(card.profile)
    if profile is None:
        known = ", ".join(sorted(snap.profiles)) or "none"
        return f"its profile {card.profile!r} is unknown on host {snap.host} (known: {known})"
    if card.profile in snap.unrunnable:
        return snap.unrunnable[card.profile]
    if free <= 0:
        return (
            f"host {snap.host} is at capacity: {snap.max_workers} of {snap.max_workers} "
            "workers busy (raise --max-workers)"
        )
    if board_free is not None and board_free <= 0:
        return f"the board-wide limit of {snap.max_running} running cards is reached"
    if per_profile[card.profile] >= profile.concurrency:
        return (
            f"profile {card.profile} is at capacity on {snap.host}: "
            f"{per_profile[card.profile]} of {profile.concurrency} running"
        )
    if card.paths:
        for other, paths in busy_paths:
            if other != card.id and paths_overlap(card.paths, paths):
                return (
                    f"its paths ({', '.join(card.paths)}) overlap card {other} "
                    f"({', '.join(paths)}), which runs first"
                )
    return None
