"""The planner (pure: tables over a snapshot), path overlap (a table), and the tick and
`kanban why` agreeing on a real board: they make one read (kanban.snapshots) and one decision
(planning.plan), and a card that can run on a free worker is never starved by cards held back
ahead of it."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import kanban
from kanban import board as verbs
from kanban import clock, dispatcher, planning, processes, snapshots, views, why
from kanban.profiles import Profile
from kanban.testing import ParkedSpawner, board_in

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
HOST = "h1"


# ------------------------------------------------------------------------ path overlap

OVERLAP = [
    (["src/**"], ["src/api/x.py"], True),
    (["src/**"], ["docs/**"], False),
    (["src/api/**"], ["src/**"], True),
    (["src/api/**"], ["src/web/**"], False),
    (["src/a.py"], ["src/a.py"], True),
    (["src/a.py"], ["src/b.py"], False),
    (["src"], ["src/a.py"], True),  # a directory holds its files
    (["src/"], ["src/a.py"], True),
    (["srcx/a.py"], ["src/a.py"], False),
    (["*.md"], ["README.md"], True),
    (["*.md"], ["docs/x.py"], False),  # unsure: conservative is fine, but this is sure
    (["docs/**", "src/a.py"], ["src/a.py"], True),
    (["a/b/c/**"], ["a/b/**"], True),
]


@pytest.mark.parametrize(("a", "b", "expected"), OVERLAP)
def test_paths_overlap(a: list[str], b: list[str], expected: bool) -> None:
    assert planning.paths_overlap(a, b) is expected
    assert planning.paths_overlap(b, a) is expected  # symmetric


# ------------------------------------------------------------------------ the pure planner

_ids = iter(range(1, 10_000))


def card(
    paths: tuple[str, ...] = (), *, priority: int = 0, profile: str | None = "demo", cid: int = 0
) -> views.CardView:
    return views.CardView(
        id=cid or next(_ids),
        title="t",
        status="running" if cid < 0 else "ready",
        profile=profile,
        priority=priority,
        parents=(),
        paths=paths,
        ready_at=NOW,
    )


def running(c: views.CardView, host: str = HOST) -> tuple[views.RunView, views.CardView]:
    run = views.RunView(
        id=c.id,
        card_id=c.id,
        attempt=1,
        max_attempts=3,
        profile=c.profile,
        worker=None,
        host=host,
        claimed_at=NOW,
        lease_expires_at=NOW,
    )
    return run, c


def snap(
    candidates: list[views.CardView],
    *,
    runs: list[tuple[views.RunView, views.CardView]] = (),  # type: ignore[assignment]
    workers: int = 4,
    concurrency: int = 4,
    max_running: int | None = None,
    unrunnable: dict[str, str] | None = None,
) -> planning.Snapshot:
    return planning.Snapshot(
        now=NOW,
        host=HOST,
        max_workers=workers,
        profiles={"demo": Profile(name="demo", command=("true",), concurrency=concurrency)},
        broken_profiles={"bad": "it does not parse"},
        running=list(runs),
        candidates=sorted(candidates, key=lambda c: (-c.priority, c.id)),
        max_running=max_running,
        unrunnable=unrunnable or {},
    )


def test_table_of_the_planner() -> None:
    src = card(("src/**",), cid=9001)
    cases: list[tuple[str, planning.Snapshot, int, str | None]] = []
    a = card()
    cases.append(("a plain card is claimed", snap([a]), a.id, None))
    b = card(profile=None)
    cases.append(("no profile", snap([b]), b.id, "no profile"))
    c = card(profile="bad")
    cases.append(("broken profile", snap([c]), c.id, "does not load: it does not parse"))
    d = card(profile="gone")
    cases.append(("unknown profile", snap([d]), d.id, "is unknown on host h1"))
    e = card()
    full = [running(card(cid=9100 + i)) for i in range(4)]
    cases.append(("host at capacity", snap([e], runs=full), e.id, "host h1 is at capacity"))
    f = card()
    cases.append(
        ("profile at capacity", snap([f], runs=full[:2], concurrency=2), f.id, "profile demo")
    )
    g = card(("src/api/x.py",))
    cases.append(("paths overlap", snap([g], runs=[running(src)]), g.id, "overlap card 9001"))
    h = card()
    other_host = [running(card(cid=9200), host="h2")]
    cases.append(
        ("board-wide cap", snap([h], runs=other_host, max_running=1), h.id, "board-wide limit")
    )
    i = card()
    no_box = {"demo": "profile demo needs bubblewrap (bwrap), not found on this host"}
    cases.append(("sandbox missing here", snap([i], unrunnable=no_box), i.id, "needs bubblewrap"))
    for name, s, card_id, reason in cases:
        plan = planning.plan(s)
        if reason is None:
            assert card_id in plan.claim, name
        else:
            assert card_id not in plan.claim, name
            assert reason in plan.waiting[card_id], name


def test_the_planner_claims_in_order_and_two_overlapping_candidates_one_at_a_time() -> None:
    first, second = card(("src/**",), priority=5), card(("src/a.py",), priority=1)
    third = card(("docs/**",))
    plan = planning.plan(snap([first, second, third]))
    assert plan.claim == (first.id, third.id)
    assert f"overlap card {first.id}" in plan.waiting[second.id]


def test_wants_more_while_a_worker_is_free_and_every_candidate_is_held_back() -> None:
    src = card(("src/**",), cid=9300)
    held = [card(("src/x",), priority=10) for _ in range(3)]
    s = snap(held, runs=[running(src)])
    assert planning.plan(s).claim == ()
    assert planning.wants_more(s, planning.plan(s)) == {"demo"}
    full = snap([card()], runs=[running(card(cid=9400 + i)) for i in range(3)])
    assert planning.wants_more(full, planning.plan(full)) == set()  # the one free is taken


# ------------------------------------------------------------------------ tick and why


@pytest.fixture
def board(repo: Path, repo_db: str) -> Iterator[kanban.Board]:
    b = board_in(repo, db=repo_db)
    yield b
    b.close()


def _the_starving_board(board: kanban.Board) -> tuple[int, list[int], int]:
    """One running card holding src/**, twelve higher-priority src/** cards, one docs card;
    a dispatcher alive (this process), so `why` may promise a claim."""
    me = processes.Identity.of(os.getpid())
    board.tx.write(
        lambda c: verbs.dispatchers.beat(
            c,
            name="test:1",
            host=board.settings.host_id,
            pid=me.pid,
            started_at=dt.datetime.fromtimestamp(me.started, dt.UTC),
            now=clock.now(),
            interval=60.0,
            version="test",
        )
    )
    holder = board.add("holds src", profile="demo", paths=["src/**"], priority=100)
    claim = board.claim(card_id=holder.id)
    assert claim is not None
    src = [board.add(f"src {i}", profile="demo", paths=["src/**"], priority=10) for i in range(12)]
    docs = board.add("docs", profile="demo", paths=["docs/**"])
    return holder.id, [c.id for c in src], docs.id


def test_a_docs_card_is_not_starved_by_src_cards_held_back(board: kanban.Board) -> None:
    _holder, src, docs = _the_starving_board(board)
    promises = {
        c: why.explain(board, c, max_workers=4)[-1] for c in [*src, docs]
    }  # before the tick
    assert promises[docs].startswith("nothing holds it back: the next tick claims it")
    assert all("overlap card" in promises[c] for c in src)
    spawner = ParkedSpawner(board)
    report = dispatcher.Dispatcher(board, max_workers=4, spawner=spawner).tick()
    assert report.claimed == [docs]
    assert report.waiting == 12
    promised = {c for c, text in promises.items() if "the next tick claims it" in text}
    assert promised <= set(report.claimed)  # why never promised what the tick did not do
    assert board.get(docs).status == "running"


def test_the_read_stops_at_max_scan_and_why_then_promises_nothing(
    board: kanban.Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    _holder, _src, docs = _the_starving_board(board)
    monkeypatch.setattr(snapshots, "MAX_SCAN", 5)  # fewer than the 12 held back ahead of it
    s = snapshots.read(board.tx, board.settings, max_workers=4, now=clock.now())
    assert docs not in {c.id for c in s.candidates}
    assert "demo" not in s.truncated or len(s.candidates) == 5
    reasons = why.explain(board, docs, max_workers=4)
    assert not any("the next tick claims it" in r for r in reasons)
    assert "the tick does not reach it" in reasons[-1]
    report = dispatcher.Dispatcher(board, max_workers=4, spawner=ParkedSpawner(board)).tick()
    assert docs not in report.claimed


def test_a_card_whose_earlier_agent_may_live_is_neither_read_nor_promised(
    board: kanban.Board,
) -> None:
    """The snapshot checks what the claim checks: an ended run not yet released (its
    supervisor checked in) keeps the card back, and why says so instead of promising."""
    _the_starving_board(board)  # (a dispatcher alive)
    card = board.add("again", profile="demo", paths=["tests/**"])
    claim = board.claim(card_id=card.id)
    assert claim is not None
    me = processes.Identity.of(os.getpid())
    board.tx.write(
        lambda c: verbs.record_start(
            c,
            card_id=card.id,
            token=claim.token,
            now=clock.now(),
            supervisor_pid=me.pid,
            supervisor_started=me.started,
        )
    )
    board.fail(card.id, token=claim.token, error="boom")
    board.tx.write(lambda c: c.exec_driver_sql("UPDATE cards SET not_before = NULL"))
    s = snapshots.read(board.tx, board.settings, max_workers=4, now=clock.now())
    assert card.id not in {c.id for c in s.candidates}
    reasons = why.explain(board, card.id, max_workers=4)
    assert "an earlier run's agent may still be alive" in reasons[-1]
    report = dispatcher.Dispatcher(board, max_workers=4, spawner=ParkedSpawner(board)).tick()
    assert card.id not in report.claimed
