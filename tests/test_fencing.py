"""Invariant 2, fenced leases: once a run is no longer current, writes with its token are
refused with LeaseLost and change nothing, through the API and through the CLI."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

import kanban
from kanban.testing import snapshot

Stale = Callable[[kanban.Board, int, str], None]


def _reclaimed(board: kanban.Board, card_id: int, token: str) -> None:
    board.reclaim_expired(now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))


def _completed_by_hand(board: kanban.Board, card_id: int, token: str) -> None:
    board.complete(card_id, summary="a person finished it")


def _replaced(board: kanban.Board, card_id: int, token: str) -> None:
    """Reclaimed, then claimed again: a new run with a new token is current."""
    _reclaimed(board, card_id, token)
    board.tx.write(lambda c: c.exec_driver_sql("UPDATE cards SET not_before = NULL"))
    new = board.claim(card_id=card_id)
    assert new is not None and new.token != token


def _cancelled(board: kanban.Board, card_id: int, token: str) -> None:
    board.cancel(card_id)


STALE_WAYS = {
    "reclaimed": _reclaimed,
    "completed by hand": _completed_by_hand,
    "run replaced": _replaced,
    "cancelled": _cancelled,
}
WRITES: dict[str, Callable[[kanban.Board, int, str], object]] = {
    "heartbeat": lambda b, c, t: b.heartbeat(c, token=t),
    "complete": lambda b, c, t: b.complete(c, token=t, summary="late"),
    "fail": lambda b, c, t: b.fail(c, token=t, error="late"),
    "block": lambda b, c, t: b.block(c, token=t, reason="late"),
}


@pytest.mark.parametrize("way", list(STALE_WAYS))
@pytest.mark.parametrize("write", list(WRITES))
def test_a_stale_token_is_refused_and_changes_nothing(
    board: kanban.Board, way: str, write: str
) -> None:
    card = board.add("contested")
    board.add("child", parents=[card.id])
    claim = board.claim(ttl=1)
    assert claim is not None
    STALE_WAYS[way](board, card.id, claim.token)
    before = snapshot(board.engine)
    with pytest.raises(kanban.LeaseLost, match="lease lost"):
        WRITES[write](board, card.id, claim.token)
    assert snapshot(board.engine) == before


def test_a_token_for_another_card_is_refused(board: kanban.Board) -> None:
    a, b = board.add("a"), board.add("b")
    claim_a = board.claim(card_id=a.id)
    assert claim_a is not None and board.claim(card_id=b.id) is not None
    with pytest.raises(kanban.LeaseLost, match=f"belongs to card {a.id}"):
        board.complete(b.id, token=claim_a.token)


@pytest.mark.parametrize("command", ["heartbeat", "complete", "fail"])
def test_cli_says_lease_lost_and_exits_non_zero(cli, command: str) -> None:  # type: ignore[no-untyped-def]
    cli.ok("add", "contested")
    token = cli.ok("claim", "--json").output.split('"token": "')[1].split('"')[0]
    cli.ok("complete", "1")  # by hand: the run is no longer current
    extra = {"fail": ["--error", "late"]}.get(command, [])
    result = cli(command, "1", "--token", token, *extra)
    assert result.exit_code == 5
    assert result.output.startswith("kanban: lease lost")
    assert "refused" in result.output
