"""The dispatcher's loop (kanban.dispatcher.Dispatcher.run): tick requests serialised, so a
wake during a tick runs one more tick right after it, and ticks again when something is due."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any, Protocol

from kanban import errors
from kanban.ticks import TickReport

logger = logging.getLogger("kanban.dispatcher")


class Ticking(Protocol):
    """What the loop asks of its dispatcher."""

    gone: errors.BoardGone | None

    def tick(self, now: dt.datetime | None = None) -> TickReport: ...

    def now(self) -> dt.datetime: ...


class Loop:
    """Serialises tick requests: a wake during a tick runs one more tick right after it."""

    def __init__(
        self,
        dispatcher: Ticking,
        stop: threading.Event,
        until: Callable[[TickReport], bool] | None,
        observe: Callable[[TickReport | None, Exception | None], None] | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.stop = stop
        self.until = until
        self.observe = observe
        self.scheduler: Any = None
        self.courier: Any = None  # kanban.notify.courier.Courier, while the loop runs
        self._lock = threading.Lock()
        self._running = False
        self._again = False
        self._due: dt.datetime | None = None

    def request(self) -> None:
        with self._lock:
            if self._running:
                self._again = True
                return
        if self.scheduler is not None and not self.stop.is_set():
            with contextlib.suppress(Exception):  # the scheduler may be shutting down
                self.scheduler.modify_job("tick", next_run_time=dt.datetime.now(dt.UTC))

    def check_timer(self) -> None:
        due = self._due
        if due is not None and self.dispatcher.now() >= due:
            self._due = None
            self.request()

    def job(self) -> None:
        while not self.stop.is_set():
            with self._lock:
                self._running, self._again = True, False
            try:
                report = self.dispatcher.tick()
                self._due = report.next_due
                if self.courier is not None:
                    self.courier.wake.set()  # the tick may have made deliveries due
                if self.observe is not None:
                    self.observe(report, None)
                if self.until is not None and self.until(report):
                    self.stop.set()
            except errors.BoardGone as exc:  # nothing to dispatch any more: stop, loudly
                logger.error("%s", exc.message)
                self.dispatcher.gone = exc
                self.stop.set()
            except Exception as exc:  # a tick must never kill the loop
                logger.exception("tick failed; the next one will try again")
                if self.observe is not None:
                    with contextlib.suppress(Exception):
                        self.observe(None, exc)
            with self._lock:
                if not self._again:
                    self._running = False
                    return


def install_signal_handlers(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        logger.info("%s: stopping after the current tick", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
