"""The board keeps digests of lease tokens (docs/security.md): every verb that is handed a
token compares its digest. A verb comparing the token itself finds no run: a supervisor then
never released its run (the card's next attempt waited for a minute-long tick) and a plan
reported through `Board.end_run` was never delivered."""

from __future__ import annotations

import kanban
from kanban import board as verbs
from kanban import clock
from kanban.states import RunOutcome


def test_a_supervisor_releases_its_own_run_by_its_token(board: kanban.Board) -> None:
    card = board.add("t")
    claim = board.claim()
    assert claim is not None and claim.card_id == card.id
    board.end_run(card.id, token=claim.token, outcome=RunOutcome.FAILED, error="x")
    (run,) = board.runs(card.id)
    released = board.tx.write(
        lambda c: verbs.releases.release_run(
            c, run_id=run.id, token=claim.token, now=clock.now(), how="supervisor"
        )
    )
    assert released
    assert board.runs(card.id)[0].released_at is not None


def test_the_live_run_is_found_by_its_token(board: kanban.Board) -> None:
    card = board.add("t")
    claim = board.claim()
    assert claim is not None
    live = board.tx.read(lambda c: verbs.live_run_of(c, card.id, token=claim.token))
    assert live is not None and live.card_id == card.id
    assert board.tx.read(lambda c: verbs.live_run_of(c, card.id, token="not-it")) is None
