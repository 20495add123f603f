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
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_two_parents_finishing_at_once_promote_their_child(board: kanban.Board) -> None:
    for _ in range(ROUNDS):
        left, right = board.add("left"), board.add("right")
        child = board.add("child", parents=[left.id, right.id])
        a, b = board.claim(card_id=left.id), board.claim(card_id=right.id)
        assert a is not None and b is not None
        _together(
            lambda a=a: board.complete(a.card_id, token=a.token),
            lambda b=b: board.complete(b.card_id, token=b.token),
        )
        assert board.get(child.id).status == "ready", f"round {_}: the child was left waiting"


def test_a_child_added_while_its_parent_finishes_is_not_left_waiting(board: kanban.Board) -> None:
    for _ in range(ROUNDS):
        parent = board.add("parent")
        claim = board.claim(card_id=parent.id)
        assert claim is not None
        added: list[kanban.views.CardView] = []  # type: ignore[name-defined]
        _together(
            lambda: board.complete(parent.id, token=claim.token),
            lambda: added.append(board.add("child", parents=[parent.id])),
        )
        board_view = board.get(added[0].id)
        assert board_view.status == "ready", f"round {_}: the child was left waiting"


def test_two_links_at_once_never_close_a_cycle(board: kanban.Board) -> None:
    for _ in range(ROUNDS):
        a, b = board.add("a"), board.add("b")
        outcomes: list[str] = []

        def link(parent: int, child: int) -> None:
            try:
                board.link(parent, child)
                outcomes.append("linked")
            except kanban.CycleError:
                outcomes.append("cycle")

        _together(lambda: link(a.id, b.id), lambda: link(b.id, a.id))
        assert sorted(outcomes) == ["cycle", "linked"], f"round {_}: {outcomes}"
