"""Watching a running agent: its process, and its output as it lands in the run's log.

The agent's stdout and stderr reach the log through the supervisor's pump (kanban.agentlog,
which keeps the file bounded), and the watcher tails that log. Each new line is fed to the
profile's output reader; the watcher ends the watch when

- the agent exits (`exited`),
- the run passes its timeout (`timeout`),
- nothing but noise was printed for the profile's `idle_timeout` (`stalled`),
- the agent said it cannot log in or is not configured (`auth`; it gets a moment to exit
  by itself first, so its last words and usage are kept),
- the run's cost reaches a cap (`cost_cap`),
- the supervisor is told to stop, or its lease is lost (`stopping`, `lease_lost`).

It never signals the agent itself: the supervisor decides and stops the process group.
`Heartbeat` renews the run's lease beside it, and says when the lease is lost.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from kanban import agentlog, api, errors, outcomes, outputs, ports, profiles

logger = logging.getLogger(__name__)

POLL = 0.25
AUTH_GRACE = 3.0  # an agent that cannot log in may take this long to exit by itself
SUPERVISOR_PREFIX = "[kanban] "

Why = Literal["exited", "timeout", "stalled", "auth", "cost_cap", "stopping", "lease_lost"]


class LogTail:
    """New complete lines of a file from an offset on; `rest()` also returns a last line
    with no newline (once the writer is gone).

    Bounded in memory: at most `chunk` bytes are read per call, and a line longer than
    `max_line` keeps only its last `max_line` bytes (`cut` counts what was dropped), so
    100 MB printed on one line costs the supervisor `max_line`, not 100 MB.
    """

    def __init__(
        self,
        path: Path,
        start: int,
        *,
        chunk: int = 1 << 20,
        max_line: int = 256 << 10,
        log: agentlog.AgentLog | None = None,
    ) -> None:
        self.path = path
        self.log = log  # a bounded log: read by its logical offsets (its cuts skipped)
        self.offset = start
        self.partial = b""
        self.chunk = chunk
        self.max_line = max_line
        self.cut = 0  # bytes of over-long lines not kept
        self.skipped = 0  # bytes cut from the bounded log before they were read
        self._resync = False  # after a skip: drop the rest of the broken line
        self.caught_up = False

    def _next_chunk(self) -> bytes | None:
        if self.log is not None:
            chunk, self.offset, skipped = self.log.read(self.offset, self.chunk)
            if skipped:
                self.skipped += skipped + len(self.partial)
                self.partial, self._resync = b"", True
            self.caught_up = self.offset >= self.log.written
            return chunk
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read(self.chunk)
        except OSError:
            self.caught_up = True
            return None
        self.caught_up = len(chunk) < self.chunk
        self.offset += len(chunk)
        return chunk

    def lines(self) -> list[str]:
        """The complete lines of the next chunk (`caught_up` says whether it reached the end)."""
        chunk = self._next_chunk()
        if chunk is None:
            return []
        data = self.partial + chunk
        *complete, self.partial = data.split(b"\n")
        if self._resync and complete:  # the first piece after a cut is a broken line
            self.skipped += len(complete.pop(0))
            self._resync = False
        elif self._resync:
            self.skipped += len(self.partial)
            self.partial = b""
        self.partial = self._keep(self.partial)
        return [self._keep(line).decode(errors="replace") for line in complete]

    def _keep(self, line: bytes) -> bytes:
        if len(line) <= self.max_line:
            return line
        self.cut += len(line) - self.max_line
        return line[-self.max_line :]

    def rest(self) -> list[str]:
        found = self.lines()
        while not self.caught_up:
            found += self.lines()
        if self.partial:
            found.append(self.partial.decode(errors="replace"))
            self.partial = b""
        return found


@dataclasses.dataclass(frozen=True, slots=True)
class Ended:
    why: Why
    returncode: int | None = None
    detail: str | None = None  # the line, cap or limit that ended it


class Watcher:
    def __init__(
        self,
        agent: ports.AgentProcess,
        *,
        profile: profiles.Profile,
        log_path: Path,
        start_offset: int,
        timeout: float,
        caps: Sequence[outcomes.Cap] = (),
        stopping: threading.Event | None = None,
        lease_lost: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        model: str | None = None,
        log: agentlog.AgentLog | None = None,
        pump: agentlog.Pump | None = None,
    ) -> None:
        self.agent = agent
        self.profile = profile
        self.model = model  # the card's model: its prices, where the profile gives them
        self.tail = LogTail(log_path, start_offset, log=log)
        self.pump = pump  # the agent's output pipe into `log`
        self.start_offset = start_offset  # where this agent's output begins in the log
        self.reader = outputs.reader(profile.output)
        self.timeout = timeout
        self.caps = list(caps)
        self.stopping = stopping or threading.Event()
        self.lease_lost = lease_lost or threading.Event()
        self.clock = clock
        self.started = clock()
        self.last_progress = self.started
        self.last_noise: str | None = None
        self.auth_line: str | None = None
        self.auth_deadline: float | None = None

    def report(self) -> outputs.Report:
        return self.reader.report()

    def cost(self) -> float | None:
        return outcomes.run_cost(self.profile, self.reader.report(), model=self.model)

    def feed(self, lines: list[str]) -> None:
        for line in lines:
            if line.startswith(SUPERVISOR_PREFIX):
                continue
            if outcomes.is_noise(self.profile, line):
                self.last_noise = line  # not progress, not for the reader; still its words
                said = [line]
            else:
                if line.strip():
                    self.last_progress = self.clock()
                said = self.reader.feed(line)
            if self.auth_line is None:
                found = outcomes.first_match(self.profile.auth_patterns, said)
                if found is not None:
                    self.auth_line = found
                    self.auth_deadline = self.clock() + AUTH_GRACE

    def watch(self) -> Ended:
        """Until the agent exits or something must stop it. Never signals it."""
        deadline = self.started + self.timeout
        idle = self.profile.idle_timeout
        while True:
            now = self.clock()
            try:
                code = self.agent.wait(timeout=max(0.0, min(POLL, deadline - now)))
            except subprocess.TimeoutExpired:
                code = None
            before = self.tail.partial
            self.feed(self.tail.lines())
            if len(self.tail.partial) > len(before) and not outcomes.is_noise(
                self.profile, self.tail.partial.decode(errors="replace")
            ):
                self.last_progress = self.clock()  # a long line is still being written
            if code is not None:
                self.finish()
                return Ended("exited", returncode=code)
            reached = outcomes.cap_reached(self.caps, self.cost())
            if reached is not None:
                return Ended("cost_cap", detail=reached)
            now = self.clock()
            if self.stopping.is_set():
                return Ended("stopping")
            if self.lease_lost.is_set():
                return Ended("lease_lost")
            if now >= deadline:
                return Ended("timeout", detail=f"{self.timeout}")
            if self.auth_deadline is not None and now >= self.auth_deadline:
                return Ended("auth", detail=self.auth_line)
            if idle is not None and now - self.last_progress >= idle:
                return Ended("stalled", detail=self.last_noise)

    def finish(self) -> None:
        """After the agent is gone: read what is left, including a last unfinished line
        (chunk by chunk, so a flood of output is never held at once)."""
        if self.pump is not None:
            self.pump.drain()
        self.feed(self.tail.lines())
        while not self.tail.caught_up:
            self.feed(self.tail.lines())
        self.feed(self.tail.rest())


class Heartbeat(threading.Thread):
    """Renews the run's lease every interval from the moment the supervisor checks in, so a
    slow checkout or merge never lets the lease lapse. Sets `lost` when the lease is gone:
    refused by the board, or (`unreachable`) no beat reached the board for `ttl` seconds, after
    which another host may take the card and our agent must stop."""

    def __init__(
        self,
        board: api.Board,
        card_id: int,
        token: str,
        interval: float,
        *,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.board, self.card_id, self.token, self.interval = board, card_id, token, interval
        self.ttl = ttl
        self.clock = clock
        self.lost = threading.Event()
        self.done = threading.Event()
        self.unreachable = False
        self.last_ok = clock()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.beat()
            if self.lost.is_set():
                return

    def beat(self) -> None:
        try:
            self.board.heartbeat(self.card_id, token=self.token)
            self.last_ok = self.clock()
        except errors.LeaseLost:
            self.lost.set()
        except errors.KanbanError as exc:  # the database is briefly unavailable: go on
            silent = self.clock() - self.last_ok
            logger.warning("heartbeat failed (%.0fs since the last one landed): %s", silent, exc)
            if self.ttl is not None and silent >= self.ttl:
                self.unreachable = True
                self.lost.set()

    def stop(self) -> None:
        self.done.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)
