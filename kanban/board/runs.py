"""Verbs on runs: claim, heartbeat, record the process, end (complete/block/fail...), reclaim.

Fencing (design invariant 2): every write for a run after its claim is one conditional
UPDATE on (card, token, run still live). A stale writer matches no row, changes nothing,
and gets `LeaseLost`.

Tokens are stored as their SHA-256 digest: the plaintext exists only in the claimer's hands
(the dispatcher, then the run's supervisor), so reading the board file gives no token, and a
token opens nothing once its run has ended.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import random
import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kanban import errors, views
from kanban.board import _rows, releases, turns
from kanban.board._rows import Stored, digest
from kanban.board.cards import promote
from kanban.models import cards, runs
from kanban.states import SPENDS_ATTEMPT, CardStatus, RunOutcome, table_move

logger = logging.getLogger(__name__)
S = CardStatus
Outcome = RunOutcome
CLAIM = table_move(S.READY, S.RUNNING)  # the one move a claim makes


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter in [delay/2, delay], capped."""

    base: float = 30.0
    cap: float = 1800.0

    def delay(self, attempt: int, rand: random.Random | None = None) -> float:
        raw = float(min(self.cap, self.base * (2 ** max(0, attempt - 1))))
        # Jitter spreads retries apart; it is not a secret.
        r = rand.random() if rand is not None else random.random()  # noqa: S311
        return raw / 2 + raw / 2 * r


# Statements of the hot paths are built once and run with bound values: building and
# hashing SQLAlchemy constructs on every call was most of a claim's cost.
_INSERT_RUN = sa.insert(runs).returning(runs.c.id)


_CLAIMED_ID: sa.ColumnClause[int] = sa.literal_column("cards.id")


@functools.cache
def _claim_statement(postgres: bool, by_profile: bool, by_card: bool) -> sa.Update:
    """UPDATE the best claimable card to running, RETURNING it. The candidate is re-checked
    (ready, not backing off, every parent done) inside the statement itself."""
    # (bound names must differ from the columns an UPDATE sets)
    now = sa.bindparam("p_now", type_=cards.c.updated_at.type)
    pick = (
        sa.select(cards.c.id)
        .where(cards.c.status == CLAIM[0].value)
        .where(sa.or_(cards.c.not_before.is_(None), cards.c.not_before <= now))
        .where(~_rows.unfinished_parent(cards.c.id))
        # One live agent per card: not while an earlier run's processes may be alive.
        .where(
            ~releases.unreleased(
                cards.c.id,
                host=sa.bindparam("p_host", type_=runs.c.host.type),
                stale=sa.bindparam("p_stale_before", type_=runs.c.lease_expires_at.type),
            )
        )
        .order_by(cards.c.priority.desc(), cards.c.ready_at, cards.c.id)
        .limit(1)
    )
    if by_profile:
        pick = pick.where(cards.c.profile == sa.bindparam("p_profile"))
    if by_card:
        pick = pick.where(cards.c.id == sa.bindparam("p_card_id"))
    if postgres:
        pick = pick.with_for_update(skip_locked=True, of=cards)
    picked = pick.cte("pick")
    return (
        sa.update(cards)
        # `id = (SELECT ...)`, not `id IN (...)`: SQLite then looks the one card up by its key
        # instead of walking the whole ready queue (0.02 ms against 6.6 ms at 25k ready).
        .where(cards.c.id == sa.select(picked.c.id).scalar_subquery())
        .where(cards.c.status == CLAIM[0].value)
        .values(status=CLAIM[1].value, updated_at=now, reason=None)
        # What the rest of the claim needs comes back with the card, so the write lock is held
        # for three statements (this, the run, the event) and no more round trips.
        # (`cards.id` spelled out: SQLAlchemy writes RETURNING columns unqualified, and a bare
        # `id` inside these subqueries would mean the inner table's own.)
        .returning(
            *cards.c,
            sa.select(sa.func.count())
            .select_from(runs)
            .where(runs.c.card_id == _CLAIMED_ID)
            .scalar_subquery()
            .label("runs_before"),
            _rows.parents_column(_CLAIMED_ID, postgres=postgres),
        )
    )


def claim(
    conn: Connection,
    *,
    now: dt.datetime,
    host: str,
    ttl: float,
    worker: str | None = None,
    profile: str | None = None,
    card_id: int | None = None,
    default_max_attempts: int = 3,
    actor: str | None = None,
) -> views.Claim | None:
    """Claim the best ready card (priority, then age), or `card_id`; None when nothing is ready.

    One statement decides the winner: the candidate is re-checked (ready, not backing off,
    every parent done) inside the UPDATE itself, so two claimers can never both win.
    """
    params: dict[str, Any] = {
        "p_now": now,
        "p_profile": profile,
        "p_card_id": card_id,
        "p_host": host,
        "p_stale_before": now - dt.timedelta(seconds=ttl),
    }
    stmt = _claim_statement(
        conn.dialect.name == "postgresql", profile is not None, card_id is not None
    )
    row = conn.execute(stmt, params).first()
    if row is None:
        return None
    token = secrets.token_hex(16)
    # Runs are numbered in order; the budget is the card's spent attempts (rate limits and
    # cancels do not spend one), checked against max_attempts when a run ends.
    attempt = 1 + row.runs_before
    max_attempts = row.max_attempts or default_max_attempts
    lease = now + dt.timedelta(seconds=ttl)
    run_id = conn.execute(
        _INSERT_RUN,
        {
            "card_id": row.id,
            "attempt": attempt,
            "max_attempts": max_attempts,
            "profile": row.profile,
            "worker": worker,
            "host": host,
            "token": digest(token),
            "claimed_at": now,
            "heartbeat_at": now,
            "lease_expires_at": lease,
        },
    ).scalar_one()
    _rows.record(
        conn,
        kind="claimed",
        card_id=row.id,
        run_id=run_id,
        actor=actor or worker,
        now=now,
        attempt=attempt,
        host=host,
    )
    card = _rows.card_view(row, _rows.split_parents(row.parent_list))
    return views.Claim(
        card_id=row.id,
        run_id=run_id,
        token=token,
        attempt=attempt,
        lease_expires_at=lease,
        card=card,
    )


def lease_lost(conn: Connection, card_id: int, token: str | None) -> errors.LeaseLost:
    """The error for a refused write, saying what became of the run."""
    _rows.card_row(conn, card_id)
    run = conn.execute(sa.select(runs).where(runs.c.token == digest(token or ""))).first()
    if run is None:
        return errors.LeaseLost(
            f"lease lost: no run of card {card_id} holds that token; refused, nothing changed"
        )
    if run.card_id != card_id:
        return errors.LeaseLost(
            f"lease lost: that token belongs to card {run.card_id}, not {card_id}; refused"
        )
    return errors.LeaseLost(
        f"lease lost: run {run.id} of card {card_id} already ended ({run.outcome}); "
        "this report was refused and changed nothing. Stop working on it"
    )


def _fenced(card_id: int, token: str) -> list[sa.ColumnElement[bool]]:
    return [runs.c.card_id == card_id, runs.c.token == digest(token), runs.c.outcome.is_(None)]


def heartbeat(
    conn: Connection, *, card_id: int, token: str, ttl: float, now: dt.datetime
) -> views.RunView:
    row = conn.execute(
        sa.update(runs)
        .where(*_fenced(card_id, token))
        .values(heartbeat_at=now, lease_expires_at=now + dt.timedelta(seconds=ttl))
        .returning(*runs.c)
    ).first()
    if row is None:
        raise lease_lost(conn, card_id, token)
    return _rows.run_view(row)


def record_start(
    conn: Connection,
    *,
    card_id: int,
    token: str,
    now: dt.datetime,
    ttl: float | None = None,
    **fields: Any,
) -> views.RunView:
    """Store what the supervisor set up: pids and start times, worktree, branch, log path.
    With `ttl`, also renew the lease (the supervisor checking in counts as a heartbeat)."""
    allowed = {
        "pid",
        "pid_started",
        "supervisor_pid",
        "supervisor_started",
        "worktree",
        "branch",
        "log_path",
        "started_at",
        "model",
        "session_id",
    }
    unknown = set(fields) - allowed
    if unknown:
        raise TypeError(f"record_start got unknown fields {sorted(unknown)}")
    values = dict(fields)
    if ttl is not None:
        values.update(heartbeat_at=now, lease_expires_at=now + dt.timedelta(seconds=ttl))
    row = conn.execute(
        sa.update(runs).where(*_fenced(card_id, token)).values(**values).returning(*runs.c)
    ).first()
    if row is None:
        raise lease_lost(conn, card_id, token)
    if fields.get("branch"):
        conn.execute(sa.update(cards).where(cards.c.id == card_id).values(branch=fields["branch"]))
    if "pid" in fields:
        _rows.record(
            conn,
            kind="started",
            card_id=card_id,
            run_id=row.id,
            now=now,
            pid=fields["pid"],
            worktree=fields.get("worktree"),
        )
    return _rows.run_view(row)


def end_run(
    conn: Connection,
    *,
    card_id: int,
    token: str,
    result: views.RunResult,
    now: dt.datetime,
    backoff: Backoff,
    actor: str | None = None,
    expired_before: dt.datetime | None = None,
    refuse_bad_delivery: bool = False,
) -> views.RunEnd:
    """End the live run holding `token` with `result`, and move its card accordingly: the one
    verb that ends a run, whoever reports (supervisor, dispatcher, CLI, API).

    done -> card done (or review); blocked -> card blocked; rate_limited -> ready after a
    cooldown, no attempt spent; anything else spends an attempt: ready after backoff, or
    blocked with the last error once the run's budget is spent.
    A goal's planner or judge that ends `done` delivers its plan or verdict (read before the
    transaction, `result.delivery`) in the same transaction. One that is refused ends the run
    `failed` with the reason, or, with `refuse_bad_delivery`, raises PlanError and changes
    nothing (an agent reporting by itself can fix its file while it still holds the lease).
    `expired_before` makes the close conditional on the lease having expired (reclaims).
    """
    if result.outcome is Outcome.CANCELLED:
        raise ValueError("runs are cancelled by moving their card (board.cards.move)")
    if result.outcome is Outcome.DONE:
        card = _rows.get_card(conn, card_id)
        if card.role is not None and card.goal_id is not None:
            return _end_delivering(
                conn,
                card=card,
                token=token,
                result=result,
                now=now,
                backoff=backoff,
                actor=actor,
                refuse=refuse_bad_delivery,
            )
    return _close(
        conn,
        card_id=card_id,
        token=token,
        result=result,
        now=now,
        backoff=backoff,
        actor=actor,
        expired_before=expired_before,
    )


def _end_delivering(
    conn: Connection,
    *,
    card: views.CardView,
    token: str,
    result: views.RunResult,
    now: dt.datetime,
    backoff: Backoff,
    actor: str | None,
    refuse: bool,
) -> views.RunEnd:
    try:
        with conn.begin_nested():
            ended = _close(
                conn,
                card_id=card.id,
                token=token,
                result=result,
                now=now,
                backoff=backoff,
                actor=actor,
            )
            turns.deliver(conn, card=card, delivery=result.delivery, now=now)
            return ended
    except errors.LeaseLost:
        raise
    except errors.KanbanError as exc:
        if refuse:
            raise errors.PlanError(
                f"{exc.message}; fix the file and report again (`kanban complete`)"
            ) from exc
        logger.warning("card %s: %s", card.id, exc.message)
        failed = dataclasses.replace(
            result, outcome=Outcome.FAILED, summary=None, error=exc.message, delivery=None
        )
        return _close(
            conn,
            card_id=card.id,
            token=token,
            result=failed,
            now=now,
            backoff=backoff,
            actor=actor,
        )


def _close(
    conn: Connection,
    *,
    card_id: int,
    token: str,
    result: views.RunResult,
    now: dt.datetime,
    backoff: Backoff,
    actor: str | None = None,
    expired_before: dt.datetime | None = None,
) -> views.RunEnd:
    outcome = result.outcome
    summary, error = result.summary, result.error
    if summary is not None:
        summary = _rows.check_text(summary, what="summary", limit=_rows.MAX_BODY)
    if error is not None:
        error = error[: _rows.MAX_BODY]
    conditions = _fenced(card_id, token)
    if expired_before is not None:
        conditions.append(runs.c.lease_expires_at < expired_before)
    extra = {
        k: v
        for k, v in (
            ("tokens_in", result.tokens_in),
            ("tokens_out", result.tokens_out),
            ("cost_usd", result.cost_usd),
            ("log_path", result.log_path),
        )
        if v is not None
    }
    row = conn.execute(
        sa.update(runs)
        .where(*conditions)
        .values(
            outcome=outcome.value,
            ended_at=now,
            summary=summary,
            error=error,
            exit_code=result.exit_code,
            **extra,
        )
        .returning(*runs.c)
    ).first()
    if row is None:
        raise lease_lost(conn, card_id, token)
    run = _rows.run_view(row)
    card = _rows.card_row(conn, card_id)
    retry_at: dt.datetime | None = None
    promoted: list[int] = []
    spends = outcome in SPENDS_ATTEMPT if result.spends_attempt is None else result.spends_attempt
    if outcome is Outcome.DONE:
        target = S.REVIEW if card.review else S.DONE
        _rows.set_status(
            conn,
            card_id,
            target,
            now=now,
            summary=summary,
            reason=None,
            not_before=None,
            current=card.status,
        )
        if target is S.DONE:
            promoted = promote(conn, now=now, parent_ids=[card_id])
    elif outcome is Outcome.BLOCKED:
        target = S.BLOCKED
        _rows.set_status(
            conn,
            card_id,
            target,
            now=now,
            current=card.status,
            reason=error or summary or "blocked",
            attempts=card.attempts + (1 if spends else 0),
        )
    else:
        attempts = card.attempts + (1 if spends else 0)
        if attempts >= run.max_attempts:
            target = S.BLOCKED
            reason = f"gave up after {attempts} of {run.max_attempts} attempts; last: {outcome}"
            if error:
                reason += f": {error}"
            _rows.set_status(
                conn,
                card_id,
                target,
                now=now,
                current=card.status,
                attempts=attempts,
                reason=reason,
                not_before=None,
            )
        else:
            delay = (
                result.retry_after
                if result.retry_after is not None
                else backoff.delay(max(1, attempts))
            )
            retry_at = now + dt.timedelta(seconds=delay)
            _rows.lock_parents(conn, card_id)
            parent_waiting = conn.execute(sa.select(_rows.unfinished_parent(card_id))).scalar()
            target = S.TODO if parent_waiting else S.READY
            _rows.set_status(
                conn,
                card_id,
                target,
                now=now,
                current=card.status,
                attempts=attempts,
                not_before=retry_at,
                reason=error,
            )
    _rows.record(
        conn,
        kind="run_ended",
        card_id=card_id,
        run_id=run.id,
        actor=actor,
        now=now,
        outcome=outcome.value,
        attempt=run.attempt,
        exit_code=result.exit_code,
        error=error,
        card_status=target.value,
        retry_at=retry_at.isoformat() if retry_at else None,
        **({"metadata": dict(result.metadata)} if result.metadata else {}),
    )
    return views.RunEnd(
        run=run, card_status=target.value, retry_at=retry_at, promoted=tuple(promoted)
    )


def expired_runs(
    conn: Connection, *, now: dt.datetime, host: str | None = None
) -> list[views.RunView]:
    # No ORDER BY in SQL: ordering by id makes SQLite scan every run ever, instead of the
    # partial index of live runs. There are few live runs; sort them here.
    query = sa.select(runs).where(runs.c.outcome.is_(None), runs.c.lease_expires_at < now)
    if host is not None:
        query = query.where(runs.c.host == host)
    return sorted((_rows.run_view(r) for r in conn.execute(query)), key=lambda r: r.id)


def reclaim_expired(
    conn: Connection,
    *,
    now: dt.datetime,
    backoff: Backoff,
    run_ids: list[int] | None = None,
    actor: str | None = None,
) -> list[views.RunEnd]:
    """Close every run whose lease expired before `now` as `reclaimed` and requeue its card.

    `run_ids` limits it to runs the caller has already made safe (processes killed).
    """
    ended = []
    for run in expired_runs(conn, now=now):
        if run_ids is not None and run.id not in run_ids:
            continue
        token = token_of(conn, run.id)
        since = run.heartbeat_at or run.claimed_at
        try:
            ended.append(
                end_run(
                    conn,
                    card_id=run.card_id,
                    token=token,
                    result=views.RunResult(
                        Outcome.RECLAIMED,
                        error=f"lease expired: no heartbeat since {since.isoformat()} "
                        f"(host {run.host})",
                    ),
                    now=now,
                    backoff=backoff,
                    expired_before=now,
                    actor=actor,
                )
            )
        except errors.LeaseLost:
            continue  # renewed or closed since we looked: nothing to do
    return ended


def token_of(conn: Connection, run_id: int) -> Stored:
    """The stored token of a run: good for fenced writes by the board's own processes."""
    return Stored(conn.execute(sa.select(runs.c.token).where(runs.c.id == run_id)).scalar_one())
