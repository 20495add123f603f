"""The board's verbs through the public API: adding, linking, claiming, finishing, retrying."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

import kanban
from kanban import CardStatus as S
from kanban import board as verbs
from kanban import db
from kanban.testing import wait_for


def test_a_card_without_parents_is_ready_and_with_unfinished_parents_todo(
    board: kanban.Board,
) -> None:
    a = board.add("parent")
    b = board.add("child", parents=[a.id])
    assert (a.status, b.status) == ("ready", "todo")
    assert b.parents == (a.id,)


def test_a_card_whose_parents_are_all_done_starts_ready(board: kanban.Board) -> None:
    a = board.add("parent")
    board.complete(a.id)
    assert board.add("child", parents=[a.id]).status == "ready"


def test_completing_promotes_children_in_the_same_transaction(board: kanban.Board) -> None:
    a, b = board.add("a"), board.add("b")
    c = board.add("c", parents=[a.id, b.id])
    claim = board.claim(card_id=a.id)
    assert claim is not None
    board.complete(a.id, token=claim.token, summary="a done")
    assert board.get(c.id).status == "todo"  # b still open
    claim = board.claim(card_id=b.id)
    assert claim is not None
    board.complete(b.id, token=claim.token)
    assert board.get(c.id).status == "ready"
    assert board.claim() is not None  # claimable by hand at once, no dispatcher involved


def test_claim_takes_highest_priority_then_oldest(board: kanban.Board) -> None:
    old = board.add("old")
    board.add("newer")
    urgent = board.add("urgent", priority=5)
    first, second = board.claim(), board.claim()
    assert first is not None and second is not None
    assert (first.card_id, second.card_id) == (urgent.id, old.id)


def test_claim_returns_none_when_nothing_is_ready(board: kanban.Board) -> None:
    assert board.claim() is None
    a = board.add("a")
    board.add("b", parents=[a.id])
    assert board.claim() is not None
    assert board.claim() is None  # b waits for a


def test_claim_filters_by_profile(board: kanban.Board) -> None:
    board.add("x", profile="shell")
    y = board.add("y", profile="demo")
    claim = board.claim(profile="demo")
    assert claim is not None and claim.card_id == y.id
    assert board.claim(profile="demo") is None


def test_parents_are_rechecked_inside_the_claim(board: kanban.Board) -> None:
    """Even a card marked ready is not claimable while a parent is not done."""
    a = board.add("a")
    b = board.add("b")
    board.tx.write(
        lambda c: c.exec_driver_sql(
            f"INSERT INTO dependencies (parent_id, child_id) VALUES ({a.id}, {b.id})"
        )
    )
    assert board.get(b.id).status == "ready"  # forced into an inconsistent state
    claim = board.claim(card_id=b.id)
    assert claim is None


def test_a_failed_attempt_backs_off_then_blocks_when_attempts_are_spent(
    board: kanban.Board,
) -> None:
    card = board.add("flaky", max_attempts=2)
    first = board.claim()
    assert first is not None
    after = board.fail(card.id, token=first.token, error="boom 1")
    assert after.status == "ready" and after.attempts == 1
    assert after.not_before is not None and after.not_before > dt.datetime.now(dt.UTC)
    assert board.claim() is None  # backing off
    board.tx.write(lambda c: c.exec_driver_sql("UPDATE cards SET not_before = NULL"))
    second = board.claim()
    assert second is not None and second.attempt == 2
    final = board.fail(card.id, token=second.token, error="boom 2")
    assert final.status == "blocked"
    assert final.reason is not None and "boom 2" in final.reason and "2 of 2" in final.reason


def test_rate_limited_requeues_without_spending_an_attempt(board: kanban.Board) -> None:
    card = board.add("limited", max_attempts=1)
    claim = board.claim()
    assert claim is not None
    after = board.end_run(
        card.id, token=claim.token, outcome=kanban.RunOutcome.RATE_LIMITED, retry_after=0
    )
    assert after.status == "ready" and after.attempts == 0


def test_review_cards_stop_for_a_person(board: kanban.Board) -> None:
    card = board.add("needs eyes", review=True)
    child = board.add("after", parents=[card.id])
    claim = board.claim()
    assert claim is not None
    assert board.complete(card.id, token=claim.token, summary="did it").status == "review"
    assert board.get(child.id).status == "todo"
    assert board.complete(card.id).status == "done"  # a person approves
    assert board.get(child.id).status == "ready"


def test_block_unblock_and_retry(board: kanban.Board) -> None:
    card = board.add("ask")
    claim = board.claim()
    assert claim is not None
    blocked = board.block(card.id, reason="which colour?", token=claim.token)
    assert (blocked.status, blocked.reason) == ("blocked", "which colour?")
    assert board.unblock(card.id, note="blue").status == "ready"
    assert [c.body for c in board.show(card.id).comments] == ["blue"]
    claim = board.claim()
    assert claim is not None
    board.fail(card.id, error="given up")  # by hand: failed, not retried
    assert board.get(card.id).status == "failed"
    assert board.retry(card.id).status == "ready"


def test_cancel_closes_the_live_run_and_its_token_stops_working(board: kanban.Board) -> None:
    card = board.add("doomed")
    claim = board.claim()
    assert claim is not None
    assert board.cancel(card.id, reason="not needed").status == "cancelled"
    assert board.runs(card.id)[0].outcome == "cancelled"
    with pytest.raises(kanban.LeaseLost):
        board.heartbeat(card.id, token=claim.token)


def test_triage_cards_wait_until_accepted(board: kanban.Board) -> None:
    card = board.add("maybe", triage=True)
    assert card.status == "triage"
    assert board.claim() is None
    assert board.retry(card.id).status == "ready"


def test_idempotency_key_returns_the_first_card(board: kanban.Board) -> None:
    first = board.add("report", key="report-2026-11-21")
    again = board.add("report (again)", key="report-2026-11-21")
    assert again.id == first.id and len(board.cards()) == 1


def test_archive_refuses_an_unfinished_card_with_waiting_children(board: kanban.Board) -> None:
    a = board.add("a")
    board.add("b", parents=[a.id])
    board.cancel(a.id)
    with pytest.raises(kanban.InvalidTransition, match="wait for it"):
        board.archive(a.id)


def test_done_cards_can_be_archived_and_are_hidden_from_ls(board: kanban.Board) -> None:
    a = board.add("a")
    board.complete(a.id)
    board.archive(a.id)
    assert board.cards() == []
    assert [c.id for c in board.cards(include_archived=True)] == [a.id]


def test_unknown_moves_are_refused_with_the_allowed_ones(board: kanban.Board) -> None:
    a = board.add("a")
    board.complete(a.id)
    with pytest.raises(kanban.InvalidTransition, match="cannot become blocked"):
        board.block(a.id, reason="x")


def test_reclaim_expired_requeues_and_counts_an_attempt(board: kanban.Board) -> None:
    card = board.add("slow")
    claim = board.claim(ttl=1)
    assert claim is not None
    assert board.reclaim_expired() == []  # lease still valid
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    ended = board.reclaim_expired(now=later)
    assert [e.run.outcome for e in ended] == ["reclaimed"]
    after = board.get(card.id)
    assert after.status == "ready" and after.attempts == 1


def test_every_run_and_move_leaves_an_event(board: kanban.Board) -> None:
    a = board.add("a")
    claim = board.claim()
    assert claim is not None
    board.complete(a.id, token=claim.token, summary="ok")
    kinds = [e.kind for e in board.show(a.id).events]
    assert kinds == ["created", "claimed", "run_ended"]


def test_board_file_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "board.db"  # a SQLite-file test: PostgreSQL has no file
    kanban.open_board(path).close()
    assert (path.stat().st_mode & 0o777) == 0o600


def test_verbs_do_not_commit_the_callers_transaction(board: kanban.Board) -> None:
    """The caller owns the transaction: a verb inside a rolled-back transaction leaves nothing."""
    with pytest.raises(RuntimeError), db.transaction(board.engine) as conn:  # noqa: PT012
        verbs.add_card(conn, title="ghost", now=dt.datetime.now(dt.UTC))
        raise RuntimeError("roll back")
    assert board.cards() == []


def test_states_table_has_every_status_and_archived_leaves_only_by_unarchive() -> None:
    from kanban.states import TRANSITIONS

    assert set(TRANSITIONS) == set(S)
    assert S.RUNNING not in TRANSITIONS[S.ARCHIVED]  # `unarchive` only: see board.edits
    assert S.RUNNING not in TRANSITIONS[S.TODO]  # only a claim starts a card, and only from ready


def test_two_adds_with_one_key_at_the_same_moment_give_one_card(board: kanban.Board) -> None:
    """The second add looks for the key before the first commits. SQLite's write lock makes it
    wait; on PostgreSQL it waits at the unique index, then returns the first card."""
    from kanban import clock

    looked, release = threading.Event(), threading.Event()
    results: dict[str, kanban.CardView] = {}

    def first(conn: sa.Connection) -> kanban.CardView:
        card, created = verbs.add_card(conn, title="nightly", key="nightly-1", now=clock.now())
        assert created
        looked.set()
        release.wait(timeout=30)
        return card

    t1 = threading.Thread(target=lambda: results.update(first=board.tx.write(first)))
    t1.start()
    assert looked.wait(timeout=30)
    t2 = threading.Thread(
        target=lambda: results.update(second=board.add("nightly (again)", key="nightly-1"))
    )
    t2.start()
    if board.engine.dialect.name == "postgresql":  # the second add is past its look-up
        wait_for(lambda: _waiting_on_a_lock(board), timeout=30, what="the second add to wait")
    release.set()
    t1.join(timeout=30)
    t2.join(timeout=30)
    assert results["second"].id == results["first"].id
    assert [c.title for c in board.cards()] == ["nightly"]


def _waiting_on_a_lock(board: kanban.Board) -> bool:
    with board.engine.connect() as conn:
        return bool(
            conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND application_name = current_setting('application_name')"
            ).scalar()
        )


def test_times_read_back_as_written_on_sqlite(board: kanban.Board) -> None:
    """SQLite keeps times as text; they come back as the aware UTC datetimes written, with or
    without microseconds, and a text with an offset (not ours, but possible) is converted."""
    if board.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's text times")
    card = board.add("timed")
    written = dt.datetime(2026, 12, 8, 3, 2, 34, 714675, tzinfo=dt.UTC)
    with board.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE cards SET created_at = :a, updated_at = :b, ready_at = :c WHERE id = :id"),
            {"a": "2026-12-08 03:02:34.714675", "b": "2026-12-08 03:02:34",
             "c": "2026-12-08T05:02:34+02:00", "id": card.id},
        )  # fmt: skip
    got = board.get(card.id)
    assert got.created_at == written and got.created_at.tzinfo is dt.UTC
    assert got.updated_at == written.replace(microsecond=0)
    assert got.ready_at == written.replace(microsecond=0) and got.ready_at.tzinfo is dt.UTC
    assert board.add("now").created_at.tzinfo is dt.UTC
