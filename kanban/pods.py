"""`kanban dispatch` as a container's main process: shutdown on SIGTERM, and health probes.

SIGTERM (or SIGINT) stops claiming at once (the tick in progress claims nothing more) and ends
the loop. Then, within `grace` seconds:

- by default, the dispatcher waits for this host's running supervisors to finish their runs,
  and exits when they have or when the grace is spent (agents still running then go on, or
  die with the pod, and their runs are reclaimed after the lease TTL);
- with `handoff`, it asks each of them (SIGTERM, identity-checked) to stop its agent and hand
  the card back: the run ends `crashed` without spending an attempt and the card is ready
  for another host at once.

Health: the dispatcher writes `<state dir>/health.json` at start and after every tick (its
pid, when it last ticked, whether that tick reached the board, whether it is stopping).
`kanban health --live` / `--ready` read it without touching the database, so a probe costs
one small process and no connection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from kanban import board, errors, fsutil, processes, views

logger = logging.getLogger(__name__)

HEALTH_FILE = "health.json"
LIVE_SLACK = 60.0  # a tick attempt at least this often (or 3 intervals) means the loop is alive


class Shutdown:
    """The stop event of the loop, and whether a signal (not a drain) set it."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.signalled: str | None = None

    def install(self) -> None:
        def handler(signum: int, _frame: object) -> None:
            self.signalled = signal.Signals(signum).name
            logger.info("%s: claiming nothing more; stopping after this tick", self.signalled)
            self.stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


@dataclasses.dataclass
class WindDown:
    handed_back: list[int] = dataclasses.field(default_factory=list)  # card ids
    finished: list[int] = dataclasses.field(default_factory=list)
    still_running: list[int] = dataclasses.field(default_factory=list)
    seconds: float = 0.0


def _alive_here(board_: Any, host: str) -> list[views.RunView]:
    """This host's live runs whose supervisor still runs."""
    return [
        r
        for r in board_.tx.read(lambda c: board.live_runs(c, host=host))
        if r.supervisor_pid is not None
        and r.supervisor_started is not None
        and processes.is_running(processes.Identity(r.supervisor_pid, r.supervisor_started))
    ]


def wind_down(
    board_: Any,
    *,
    host: str,
    children: dict[int, subprocess.Popen[bytes]],
    handoff: bool,
    grace: float,
    poll: float = 0.2,
) -> WindDown:
    """After the loop stopped: hand this host's runs back (`handoff`) or let them finish,
    waiting `grace` seconds at most. Reaps the supervisors that are our children."""
    t0 = time.monotonic()
    report = WindDown()
    running = _alive_here(board_, host)
    started = {r.card_id for r in running}
    if handoff:
        for run in running:
            pid, started_at = run.supervisor_pid or 0, run.supervisor_started or 0.0
            if processes.is_running(processes.Identity(pid, started_at)):  # PID reuse is real
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                report.handed_back.append(run.card_id)
        if running:
            logger.info("handing back %d run(s) to the board", len(running))
    elif running:
        logger.info("waiting up to %.0fs for %d running agent(s)", grace, len(running))
    while True:
        for run_id, child in list(children.items()):
            if child.poll() is not None:
                del children[run_id]
        left = _alive_here(board_, host) if running else []
        if not left or time.monotonic() - t0 >= grace:
            break
        time.sleep(poll)
    report.still_running = sorted(r.card_id for r in left)
    report.finished = sorted(started - set(report.still_running) - set(report.handed_back))
    report.seconds = round(time.monotonic() - t0, 2)
    if report.still_running:
        logger.warning(
            "grace of %.0fs spent; %d run(s) still going (cards %s): their leases expire "
            "and another host takes them if this one stops them",
            grace,
            len(report.still_running),
            ", ".join(map(str, report.still_running)),
        )
    return report


# ---------------------------------------------------------------------------- health


class Health:
    """What the probes read: written at start and after every tick."""

    def __init__(self, state_dir: Path, *, interval: float, repo: Path | None) -> None:
        fsutil.private_dir(state_dir)
        self.path = state_dir / HEALTH_FILE
        self.interval = interval
        self.repo = repo
        self.started = time.time()

    def write(self, *, ok: bool, error: str | None = None, stopping: bool = False) -> None:
        data = {
            "pid": os.getpid(),
            "started": self.started,
            "ticked_at": time.time(),
            "ok": ok,
            "error": error,
            "stopping": stopping,
            "interval": self.interval,
            "repo": str(self.repo) if self.repo else None,
        }
        tmp = self.path.with_suffix(".tmp")
        fsutil.write_private(tmp, json.dumps(data))  # owner-only, like everything in .kanban/
        tmp.replace(self.path)  # atomic: a probe never reads half a file


def check(state_dir: Path, *, ready: bool, now: float | None = None) -> str:
    """'live' or 'ready' with what was seen; raises HealthError saying what is wrong."""
    path = state_dir / HEALTH_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise errors.HealthError(
            f"no dispatcher has started here: {path} is missing or unreadable"
        ) from None
    now = time.time() if now is None else now
    pid = int(data["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise errors.HealthError(f"the dispatcher (pid {pid}) is not running") from None
    except PermissionError:
        pass  # it exists
    age = now - float(data["ticked_at"])
    slack = max(3 * float(data["interval"]), LIVE_SLACK)
    if age > slack:
        raise errors.HealthError(f"the dispatcher (pid {pid}) has not ticked for {age:.0f}s")
    if not ready:
        return f"live: dispatcher pid {pid}, last tick {age:.1f}s ago"
    if data.get("stopping"):
        raise errors.HealthError("the dispatcher is shutting down")
    if not data.get("ok"):
        raise errors.HealthError(
            f"the last tick did not reach the board: {data.get('error') or 'not ticked yet'}"
        )
    repo = data.get("repo")
    if not repo or not (Path(repo) / ".git").exists():
        raise errors.HealthError(f"no git clone here ({repo or 'no repository'}): clone it first")
    return f"ready: dispatcher pid {pid}, last tick {age:.1f}s ago, repository {repo}"


# ---------------------------------------------------------------------------- the loop


def serve(
    loop: Any,
    *,
    shutdown: Shutdown | None = None,
    until: Any = None,
    handoff: bool = False,
    grace: float = 0.0,
) -> WindDown | None:
    """Run `loop` (a Dispatcher) until drained (`until`) or signalled, keeping the health
    file current, then wind down as SIGTERM asks. Returns the wind-down, or None (drained)."""
    if shutdown is None:
        shutdown = Shutdown()
        shutdown.install()
    settings = loop.settings
    health = Health(settings.state_dir, interval=loop.interval, repo=settings.repo)
    health.write(ok=False, error="starting")

    def observe(report: Any, error: Exception | None) -> None:
        message = None if error is None else (getattr(error, "message", None) or str(error))
        health.write(ok=error is None, error=message, stopping=shutdown.stop.is_set())

    loop.run(stop=shutdown.stop, until=until, observe=observe)
    if shutdown.signalled is None:
        return None
    health.write(ok=False, error=f"stopping ({shutdown.signalled})", stopping=True)
    done = wind_down(
        loop.board,
        host=settings.host_id,
        children=loop.children,
        handoff=handoff,
        grace=grace,
    )
    logger.info(
        "stopped in %.1fs: %d handed back, %d finished, %d still running",
        done.seconds,
        len(done.handed_back),
        len(done.finished),
        len(done.still_running),
    )
    return done
