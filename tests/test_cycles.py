"""The dependency graph stays a DAG; refused links name the cycle and change nothing."""

from __future__ import annotations

import pytest

import kanban
from kanban.testing import snapshot


def test_a_link_that_closes_a_cycle_is_refused_naming_it(board: kanban.Board) -> None:
    a = board.add("a")
    b = board.add("b", parents=[a.id])
    c = board.add("c", parents=[b.id])
    before = snapshot(board.engine)
    with pytest.raises(kanban.CycleError) as caught:
        board.link(c.id, a.id)
    assert caught.value.cycle == [c.id, a.id, b.id, c.id]
    assert f"{c.id} -> {a.id} -> {b.id} -> {c.id}" in str(caught.value)
    assert snapshot(board.engine) == before


def test_a_self_link_is_a_cycle(board: kanban.Board) -> None:
    a = board.add("a")
    with pytest.raises(kanban.CycleError, match=f"{a.id} -> {a.id}"):
        board.link(a.id, a.id)


def test_diamonds_are_fine_and_links_are_idempotent(board: kanban.Board) -> None:
    a = board.add("a")
    b, c = board.add("b", parents=[a.id]), board.add("c", parents=[a.id])
    d = board.add("d", parents=[b.id])
    assert board.link(c.id, d.id) is True
    assert board.link(c.id, d.id) is False
    assert board.get(d.id).parents == (b.id, c.id)


def test_linking_an_unknown_card_is_refused_and_changes_nothing(board: kanban.Board) -> None:
    a = board.add("a")
    before = snapshot(board.engine)
    for parent, child in ((a.id, 999), (999, a.id)):
        with pytest.raises(kanban.CardNotFound, match="no card 999"):
            board.link(parent, child)
    assert snapshot(board.engine) == before


def test_linking_an_unfinished_parent_sends_a_ready_child_back_to_todo(board: kanban.Board) -> None:
    a, b = board.add("a"), board.add("b")
    board.link(a.id, b.id)
    assert board.get(b.id).status == "todo"
    board.unlink(a.id, b.id)
    assert board.get(b.id).status == "ready"


def test_cli_cycle_message_and_exit(cli) -> None:  # type: ignore[no-untyped-def]
    cli.ok("add", "a")
    cli.ok("add", "b", "--parent", "1")
    result = cli("link", "2", "1")
    assert result.exit_code == 4
    assert "cycle 2 -> 1 -> 2" in result.output
