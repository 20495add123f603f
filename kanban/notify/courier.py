"""The courier: a dispatcher's delivery loop, in its own thread beside the ticks.

It never holds the tick's lock and never sends inside a transaction: one short write leases
due deliveries (SKIP LOCKED on PostgreSQL, so several hosts each send a delivery once), the
requests go out with no transaction open, and one short write per delivery records the
attempt (fenced by the lease owner). A failure is retried with exponential backoff until the
board's `notify_retry_for` budget is spent; then the delivery is dead, shown by `kanban
status` and `kanban notify ls`/`log`. A receiver that hangs costs the courier its timeout and
costs the ticks nothing.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import random
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from kanban import api, board, clock, errors
from kanban.board import outbox
from kanban.board import subscriptions as subscriptions_
from kanban.notify import events, send

logger = logging.getLogger(__name__)

SILENCE_CHECK_EVERY = 30.0  # seconds between looks for dispatchers gone silent
IDLE_POLL = 5.0  # the longest the courier sleeps when nothing is due and nothing wakes it
KEEP_SENT = dt.timedelta(days=30)  # sent deliveries are kept this long (`kanban notify log`)
PRUNE_EVERY = dt.timedelta(hours=1)


def board_name(board_: api.Board) -> str:
    config = board_.settings
    return config.repo.name if config.repo is not None else config.state_dir.parent.name


class Courier:
    def __init__(
        self,
        board_: api.Board,
        *,
        name: str,
        backoff_base: float = 30.0,
        backoff_cap: float = 3600.0,
        environ: Mapping[str, str] | None = None,
        batch: int = 20,
        parallel: int = 8,
    ) -> None:
        self.board = board_
        self.owner = f"{name}:{uuid.uuid4().hex[:8]}"
        self.dispatcher_name = name
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.environ = environ
        self.batch = batch
        self.parallel = parallel
        self.wake = threading.Event()
        self._last_silence_check: dt.datetime | None = None
        self._last_prune: dt.datetime | None = None

    # ------------------------------------------------------------------ one pass

    def render(self, delivery: outbox.DeliveryView, target: subscriptions_.SubscriptionView) -> str:
        evt = events.event(
            delivery, board=board_name(self.board), web_url=self.board.settings.web_url
        )
        return events.render(evt, format=target.format)

    def retry_at(self, delivery: outbox.DeliveryView, now: dt.datetime) -> dt.datetime | None:
        """When to try again after a failed attempt, or None once the budget is spent."""
        attempts = delivery.attempts + 1
        delay = min(self.backoff_base * 2 ** (attempts - 1), self.backoff_cap)
        # Jitter, so that many failing deliveries do not all come back at one moment.
        delay *= random.uniform(0.9, 1.1)  # noqa: S311  # not for security
        when = now + dt.timedelta(seconds=delay)
        budget = dt.timedelta(seconds=self.board.settings.notify_retry_for)
        return when if when - delivery.at <= budget else None

    def deliver_due(self, now: dt.datetime | None = None) -> dict[str, int]:
        """Send what is due now; returns how many were sent, will retry, or died."""
        now = now or clock.now()
        timeout = self.board.settings.notify_timeout
        jobs = self.board.tx.write(
            lambda c: outbox.claim_due(
                c,
                now=now,
                owner=self.owner,
                lease=3 * timeout + 5.0,  # past the attempt's timeouts: a stale lease is rare
                render=self.render,
                limit=self.batch,
            )
        )
        counts = {"sent": 0, "retrying": 0, "dead": 0}
        if not jobs:
            return counts
        # In parallel: a receiver that hangs holds up its own messages, not everyone's.
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=min(len(jobs), self.parallel), thread_name_prefix="courier"
        ) as pool:
            for outcome in pool.map(lambda job: self._attempt(job, timeout=timeout), jobs):
                counts[outcome] += 1
        return counts

    def _attempt(self, job: outbox.Job, *, timeout: float) -> str:
        delivery = job.delivery
        assert delivery.body is not None
        evt = events.event(
            delivery, board=board_name(self.board), web_url=self.board.settings.web_url
        )
        answer = send.deliver(
            job.target,
            body=delivery.body,
            evt=evt,
            attempt=delivery.attempts + 1,
            timeout=timeout,
            environ=self.environ,
        )
        now = clock.now()
        retry_at = None if answer.ok else self.retry_at(delivery, now)
        kept = self.board.tx.write(
            lambda c: outbox.finish_attempt(
                c,
                delivery_id=delivery.id,
                owner=job.owner,
                now=now,
                sent=answer.ok,
                retry_at=retry_at,
                answer=answer.answer,
                error=answer.error,
            )
        )
        where = job.target.name
        if not kept:
            logger.warning("delivery %d to %s: lease lost meanwhile", delivery.id, where)
        if answer.ok:
            return "sent"
        if retry_at is None:
            logger.error("delivery %d to %s is dead: %s", delivery.id, where, answer.error)
            return "dead"
        logger.warning(
            "delivery %d to %s failed (%s); retrying at %s",
            delivery.id,
            where,
            answer.error,
            clock.iso(retry_at),
        )
        return "retrying"

    def watch_silence(self, now: dt.datetime | None = None) -> int:
        """Notify about dispatchers that stopped heartbeating (each silence once)."""
        now = now or clock.now()
        quiet = self.board.tx.read(
            lambda c: outbox.silent_dispatchers(c, now=now, me=self.dispatcher_name)
        )
        if quiet:

            def capture(conn: Any) -> None:
                for row in quiet:
                    outbox.capture_silent(conn, dispatcher=row, now=now)

            try:
                self.board.tx.write(capture)
            except errors.DatabaseError as exc:  # another dispatcher recorded it first
                logger.info("silent dispatcher already noted elsewhere: %s", exc.message)
        return len(quiet)

    # ------------------------------------------------------------------ the loop

    def step(self) -> float:
        """One turn of the loop; returns how long to sleep before the next."""
        now = clock.now()
        last = self._last_silence_check
        if last is None or (now - last).total_seconds() >= SILENCE_CHECK_EVERY:
            self._last_silence_check = now
            self.watch_silence(now)
        if self._last_prune is None or now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            self.board.tx.write(lambda c: outbox.prune(c, before=now - KEEP_SENT))
        due = self.board.tx.read(board.outbox.next_due)
        if due is not None and due <= now:
            self.deliver_due(now)
            due = self.board.tx.read(board.outbox.next_due)
        if due is None:
            return IDLE_POLL
        return max(0.0, min(IDLE_POLL, (due - clock.now()).total_seconds()))

    def loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                pause = self.step()
            except Exception:  # a delivery problem must never stop the courier
                logger.exception("notification delivery failed; trying again shortly")
                pause = IDLE_POLL
            self.wake.wait(pause)
            self.wake.clear()

    def last_pass(self) -> None:
        """Send what is due now, once (a draining dispatcher, before it exits)."""
        try:
            self.deliver_due()
        except Exception:
            logger.exception("notification delivery failed; the next dispatcher will retry")

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.loop, args=(stop,), name="courier", daemon=True)
        thread.start()
        return thread


def send_test(board_: api.Board, *, name: str) -> send.Answer:
    """`kanban notify test`: a sample event to one subscription, now, not through the outbox."""
    target = board_.tx.read(lambda c: subscriptions_.get_subscription(c, name=name))
    delivery = outbox.DeliveryView(
        id=0,
        event_id=outbox.new_event_id(),
        subscription=name,
        kind=outbox.TEST_KIND,
        at=clock.now(),
        card_id=None,
        goal_id=None,
        run_id=None,
        title=None,
        status=None,
        reason=None,
        summary=None,
        data={},
        body=None,
        state=outbox.PENDING,
        attempts=0,
        next_at=clock.now(),
        answer=None,
        error=None,
        sent_at=None,
    )
    evt = events.event(delivery, board=board_name(board_), web_url=board_.settings.web_url)
    return send.deliver(
        target,
        body=events.render(evt, format=target.format),
        evt=evt,
        attempt=1,
        timeout=board_.settings.notify_timeout,
    )
