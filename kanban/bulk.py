"""A person's moves on many cards at once: archive, cancel, retry, unblock, unarchive.

Cards are named by id or chosen by filters (status, profile, goal). **All or nothing**: the
moves run in one write transaction, and a card that refuses its move (wrong state, unknown
id) aborts the lot with an error naming that card, so the board is never left half-moved and
the command can simply be run again once the card is dealt with. Filters choose only cards
the move applies to, so a filtered run never trips over a card in the wrong state.

`retry --fresh` rebuilds each card's branch from the current base first (outside the
transaction: git is a side effect), after checking that every card may be retried.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from sqlalchemy.engine import Connection

from kanban import api, board, clock, errors, views
from kanban.states import CardStatus

S = CardStatus


@dataclasses.dataclass(frozen=True, slots=True)
class Move:
    target: CardStatus | None  # None: a verb of board.edits, not a status move
    applies_to: frozenset[CardStatus] | None  # None: whatever the transition table allows
    reset_attempts: bool = False


MOVES: dict[str, Move] = {
    "archive": Move(S.ARCHIVED, None),
    "cancel": Move(S.CANCELLED, None),
    "retry": Move(S.READY, frozenset({S.FAILED, S.BLOCKED, S.CANCELLED, S.REVIEW, S.TRIAGE}), True),
    "unblock": Move(S.READY, frozenset({S.BLOCKED}), True),
    "unarchive": Move(None, frozenset({S.ARCHIVED})),
    # A person's verdict on a card in review (the web board's Approve and Send back).
    "approve": Move(S.DONE, frozenset({S.REVIEW})),
    "send-back": Move(S.READY, frozenset({S.REVIEW}), True),
}
# What a filter selects for each verb when no --status is given.
DEFAULT_STATUSES: dict[str, frozenset[CardStatus]] = {
    "archive": frozenset({S.DONE, S.FAILED, S.CANCELLED}),
    "cancel": frozenset({S.TRIAGE, S.TODO, S.READY, S.RUNNING, S.REVIEW, S.BLOCKED}),
    "retry": MOVES["retry"].applies_to or frozenset(),
    "unblock": frozenset({S.BLOCKED}),
}


def select(
    b: api.Board,
    *,
    verb: str,
    ids: Sequence[int] = (),
    statuses: Sequence[str] = (),
    profile: str | None = None,
    goal: int | None = None,
) -> list[int]:
    """The cards a bulk verb works on: the ids given, or the cards the filters match."""
    filtered = bool(statuses or profile or goal)
    if ids and filtered:
        raise errors.UsageError("give card ids or filters (--status, --profile, --goal), not both")
    if ids:
        return sorted(set(ids))
    if not filtered:
        raise errors.UsageError(
            f"which cards? give their ids, or filters: kanban {verb} --status STATUS "
            "--profile NAME --goal ID"
        )
    wanted = [board_status(s) for s in statuses] or sorted(DEFAULT_STATUSES[verb])
    cards = b.cards(wanted, profile=profile)
    return [c.id for c in cards if goal is None or c.goal_id == goal]


def board_status(name: str) -> CardStatus:
    from kanban.states import parse_status

    return parse_status(name)


def apply(
    b: api.Board,
    card_ids: Sequence[int],
    *,
    verb: str,
    note: str | None = None,
    reason: str | None = None,
    skip_backoff: bool = False,
) -> list[views.CardView]:
    """Move every card, in one transaction: all of them, or (one refusing) none."""
    move = MOVES[verb]

    def run(conn: Connection) -> list[views.CardView]:
        now = clock.now()
        moved = []
        for card_id in card_ids:
            try:
                moved.append(
                    _one(
                        conn,
                        card_id=card_id,
                        move=move,
                        verb=verb,
                        now=now,
                        actor=b.actor,
                        note=note,
                        reason=reason,
                        skip_backoff=skip_backoff,
                    )
                )
            except errors.KanbanError as exc:
                if len(card_ids) > 1:
                    exc.message += f"; nothing was changed (all {len(card_ids)} cards or none)"
                    exc.args = (exc.message,)
                raise
        return moved

    return b.tx.write(run, wake_dispatcher=True)


def _one(
    conn: Connection,
    *,
    card_id: int,
    move: Move,
    verb: str,
    now: dt.datetime,
    actor: str,
    note: str | None,
    reason: str | None,
    skip_backoff: bool,
) -> views.CardView:
    current = board.get_card(conn, card_id)
    if skip_backoff and current.status == S.READY:
        return board.edits.skip_backoff(conn, card_id=card_id, now=now, actor=actor)
    if move.applies_to is not None and current.status not in move.applies_to:
        allowed = " or ".join(sorted(move.applies_to))
        hint = (
            "; `kanban retry --now` skips the backoff of a ready card"
            if verb == "retry" and current.status == S.READY
            else ""
        )
        raise errors.InvalidTransition(
            f"card {card_id} is {current.status}; `{verb}` applies only to {allowed} cards{hint}"
        )
    if move.target is None:
        return board.edits.unarchive(conn, card_id=card_id, now=now, actor=actor)
    if note:
        board.comment(conn, card_id=card_id, body=note, now=now, author=actor)
    return board.move(
        conn,
        card_id=card_id,
        to=move.target,
        now=now,
        actor=actor,
        reason=reason,
        reset_attempts=move.reset_attempts,
    )


def refresh_branches(b: api.Board, card_ids: Sequence[int]) -> dict[int, str | None]:
    """`retry --fresh`: each card's next attempt starts from the current base. A branch with
    commits of its own is kept under `kanban/stale/...` (returned); one without is deleted.
    Refused, changing nothing, when a card may not be retried or its worktree is dirty."""
    from kanban.worktrees import Worktrees

    cards = [b.get(c) for c in card_ids]
    applies = MOVES["retry"].applies_to or frozenset()
    for card in cards:
        if card.status not in applies:
            raise errors.InvalidTransition(
                f"card {card.id} is {card.status}; `retry --fresh` applies only to "
                f"{' or '.join(sorted(applies))} cards"
            )
    if b.settings.repo is None:
        raise errors.UsageError("--fresh needs the board's git repository; this board has none")
    trees = Worktrees(
        b.settings.repo,
        root=b.settings.worktrees,
        base_branch=b.settings.base_branch,
        remote=b.settings.remote,
    )
    for card in cards:  # every worktree clean before any branch goes
        path, _branch = trees.names(card.id, card.title)
        if path.is_dir() and not trees.is_clean(path):
            raise errors.WorktreeError(
                f"card {card.id}'s worktree {path} has uncommitted changes; commit or discard "
                f"them first (git -C {path} status); nothing was changed"
            )
    kept: dict[int, str | None] = {}
    for card in cards:
        _path, branch = trees.names(card.id, card.title)
        if not trees.branch_exists(branch):
            kept[card.id] = None
            continue
        parents = [p.branch for p in b.show(card.id).parents if p.branch]
        try:
            own = trees.own_commits(branch, parents) > 0
        except errors.WorktreeError:
            own = True  # cannot tell: keep it
        kept[card.id] = trees.reset(card.id, card.title, keep=own)
    return kept
