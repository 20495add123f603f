"""A stateful property test of the board on a real SQLite file: any sequence of add, claim,
heartbeat, end (every outcome, with current and stale tokens), cancel, retry, unblock, a
person's complete, link and unlink keeps the board's promises:

- every status move recorded in the events table is in the transition table
  (`states.TRANSITIONS`), each event's "from" is the status the card really had, and replaying
  the events gives every card's current status (so no status was written without an event);
- no card ever has two live runs; a running card has exactly one, any other card none.

Refusals (`KanbanError`: a move not in the table, a lost lease, a cycle) are allowed; anything
else fails the test.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
)

import kanban
from kanban import errors, testing
from kanban.models import cards, events, runs
from kanban.states import TRANSITIONS, CardStatus, RunOutcome

S = CardStatus
ENDINGS = [o for o in RunOutcome if o is not RunOutcome.CANCELLED]
_template: list[Path] = []


def _template_board() -> Path:
    """One migrated board file, copied for each example (migrating takes longer than a run)."""
    if not _template:
        path = Path(tempfile.mkdtemp(prefix="kanban-sm-")) / "board.db"
        kanban.open_board(path).close()
        _template.append(path)
    return _template[0]


def replay(rows: list[Any]) -> tuple[dict[int, str], list[str]]:
    """Each card's status by replaying its events, and every problem found on the way."""
    status: dict[int, str] = {}
    problems: list[str] = []
    for row in rows:
        data = row.data or {}
        if row.kind == "created":
            status[row.card_id] = data["status"]
            continue
        if row.kind == "claimed":
            new = S.RUNNING.value
        elif row.kind == "promoted":
            new = S.READY.value
        elif row.kind == "run_ended":
            new = data["card_status"]
        elif "to" in data:
            new = data["to"]
        else:
            continue  # commented, linked, started...: no status change
        old = status[row.card_id]
        if "from" in data and data["from"] != old:
            problems.append(f"event {row.id} ({row.kind}) says from {data['from']}, was {old}")
        if new != old and S(new) not in TRANSITIONS[S(old)]:
            problems.append(f"event {row.id} ({row.kind}): card {row.card_id} {old} -> {new}")
        status[row.card_id] = new
    return status, problems


class BoardMachine(RuleBasedStateMachine):
    cards = Bundle("cards")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="kanban-sm-"))
        shutil.copy(_template_board(), self.dir / "board.db")
        fast = {**testing.fast_settings(), "backoff_base": "10ms", "backoff_cap": "10ms"}
        self.board = kanban.open_board(self.dir / "board.db", **fast)
        self.tokens: dict[int, list[str]] = {}
        self.count = 0

    def teardown(self) -> None:
        self.board.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _try(self, fn: Any) -> Any:
        try:
            return fn()
        except errors.KanbanError:
            return None

    # ------------------------------------------------------------------ rules

    @rule(target=cards, review=st.booleans(), max_attempts=st.integers(1, 3))
    def add(self, review: bool, max_attempts: int) -> Any:
        self.count += 1
        card = self.board.add(f"card {self.count}", review=review, max_attempts=max_attempts)
        return card.id

    @rule(target=cards, parent=cards)
    def add_child(self, parent: int) -> Any:
        self.count += 1
        card = self._try(lambda: self.board.add(f"card {self.count}", parents=[parent]))
        return card.id if card is not None else multiple()

    @rule(card=cards)
    def claim(self, card: int) -> None:
        won = self._try(lambda: self.board.claim(card_id=card))
        if won is not None:
            self.tokens.setdefault(card, []).append(won.token)

    @rule(card=cards, stale=st.booleans())
    def heartbeat(self, card: int, stale: bool) -> None:
        for token in self._tokens(card, stale):
            self._try(lambda t=token: self.board.heartbeat(card, token=t))

    @rule(card=cards, outcome=st.sampled_from(ENDINGS), stale=st.booleans())
    def end(self, card: int, outcome: RunOutcome, stale: bool) -> None:
        for token in self._tokens(card, stale):
            self._try(
                lambda t=token: self.board.end_run(
                    card, token=t, outcome=outcome, error="x", retry_after=0
                )
            )

    @rule(card=cards)
    def cancel(self, card: int) -> None:
        self._try(lambda: self.board.cancel(card, reason="changed my mind"))

    @rule(card=cards)
    def retry(self, card: int) -> None:
        self._try(lambda: self.board.retry(card))

    @rule(card=cards)
    def unblock(self, card: int) -> None:
        self._try(lambda: self.board.unblock(card))

    @rule(card=cards)
    def complete_by_hand(self, card: int) -> None:
        self._try(lambda: self.board.complete(card, summary="a person says so"))

    @rule(parent=cards, child=cards)
    def link(self, parent: int, child: int) -> None:
        self._try(lambda: self.board.link(parent, child))

    @rule(parent=cards, child=cards)
    def unlink(self, parent: int, child: int) -> None:
        self._try(lambda: self.board.unlink(parent, child))

    @precondition(lambda self: self.count > 0)
    @rule(card=consumes(cards))
    def archive(self, card: int) -> None:
        self._try(lambda: self.board.archive(card))

    def _tokens(self, card: int, stale: bool) -> list[str]:
        known = self.tokens.get(card, [])
        if not known:
            return []
        return known[:-1] if stale else known[-1:]

    # -------------------------------------------------------------- invariants

    @invariant()
    def every_recorded_move_is_in_the_table_and_replays_to_the_board(self) -> None:
        def read(conn: Any) -> tuple[list[Any], dict[int, str]]:
            rows = conn.execute(events.select().order_by(events.c.id)).all()
            now = {r.id: r.status for r in conn.execute(cards.select())}
            return rows, now

        rows, actual = self.board.tx.read(read)
        replayed, problems = replay([r for r in rows if r.card_id is not None])
        assert problems == []
        assert replayed == actual

    @invariant()
    def no_card_has_two_live_runs_and_running_means_one(self) -> None:
        def read(conn: Any) -> tuple[dict[int, int], set[int]]:
            live: dict[int, int] = {}
            for (card_id,) in conn.execute(
                runs.select().with_only_columns(runs.c.card_id).where(runs.c.outcome.is_(None))
            ):
                live[card_id] = live.get(card_id, 0) + 1
            running = {
                c
                for (c,) in conn.execute(
                    cards.select()
                    .with_only_columns(cards.c.id)
                    .where(cards.c.status == S.RUNNING.value)
                )
            }
            return live, running

        live, running = self.board.tx.read(read)
        assert all(n == 1 for n in live.values()), live
        assert set(live) == running


BoardMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_the_board_keeps_its_promises_under_any_sequence = BoardMachine.TestCase


def test_replay_finds_a_move_outside_the_table() -> None:
    """The checker itself: a done card that became running is reported."""

    class Row:
        def __init__(self, id: int, kind: str, data: dict[str, str]) -> None:
            self.id, self.card_id, self.kind, self.data = id, 1, kind, data

    _, problems = replay(
        [
            Row(1, "created", {"status": "ready"}),
            Row(2, "done", {"from": "ready", "to": "done"}),
            Row(3, "claimed", {}),
        ]
    )
    assert problems == ["event 3 (claimed): card 1 done -> running"]
