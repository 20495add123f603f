"""Writers racing on one board: decisions that read other rows (is every parent done?) must
hold under concurrency on both backends. On PostgreSQL, READ COMMITTED lets two writers each
decide on a view the other is about to change; row locks order them (board._rows.lock_*)."""

from __future__ import annotations

import threading

import kanban

ROUNDS = 25


def _together(*actions: object) -> None:
    """Run the callables at the same moment on their own threads; re-raise the first error."""
    barrier = threading.Barrier(len(actions))
    errors: list[BaseException] = []

    def run(action: object) -> None:
        barrier.wait()
        try:
            action()  # type: ignore[operator]
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _parents_finish_at_once(board: kanban.Board) -> str:
    left, right = board.add("left"), board.add("right")
    child = board.add("child", parents=[left.id, right.id])
    a, b = board.claim(card_id=left.id), board.claim(card_id=right.id)
    assert a is not None and b is not None
    _together(
        lambda: board.complete(a.card_id, token=a.token),
        lambda: board.complete(b.card_id, token=b.token),
    )
    return board.get(child.id).status


def _child_added_as_parent_finishes(board: kanban.Board) -> str:
    parent = board.add("parent")
    claim = board.claim(card_id=parent.id)
    assert claim is not None
    added: list[int] = []
    _together(
        lambda: board.complete(parent.id, token=claim.token),
        lambda: added.append(board.add("child", parents=[parent.id]).id),
    )
    return board.get(added[0]).status


def _links_at_once(board: kanban.Board) -> list[str]:
    a, b = board.add("a"), board.add("b")
    outcomes: list[str] = []

    def link(parent: int, child: int) -> None:
        try:
            board.link(parent, child)
            outcomes.append("linked")
        except kanban.CycleError:
            outcomes.append("cycle")

    _together(lambda: link(a.id, b.id), lambda: link(b.id, a.id))
    return sorted(outcomes)


def test_two_parents_finishing_at_once_promote_their_child(board: kanban.Board) -> None:
    for round_ in range(ROUNDS):
        assert _parents_finish_at_once(board) == "ready", f"round {round_}: the child waits"


def test_a_child_added_while_its_parent_finishes_is_not_left_waiting(board: kanban.Board) -> None:
    for round_ in range(ROUNDS):
        assert _child_added_as_parent_finishes(board) == "ready", f"round {round_}"


def test_two_links_at_once_never_close_a_cycle(board: kanban.Board) -> None:
    for round_ in range(ROUNDS):
        assert _links_at_once(board) == ["cycle", "linked"], f"round {round_}"
