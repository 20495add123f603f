"""python -m bench.notify: what notifications cost the board's writes and its tick.

    python -m bench.notify [--postgres URL] [--samples 200]

Figures (milliseconds, medians), each with no subscription, with 10 subscriptions that do not
match (other kinds) and with 10 that match every event:
  add        `Board.add` (a card: not an event anyone can subscribe to)
  block      `Board.block` (a person blocks a card: one outbox insert per matching kind)
  end_run    claim + `Board.complete` with the run's token (the run's end is captured)
  tick       one dispatcher tick that claims 4 cards (parked supervisors), after the last 4
             were completed; with a courier thread sending to a receiver that never answers
             (`hanging`), when notifications exist on this code

Run it on older code too (`PYTHONPATH=/path/to/old/tree python -m bench.notify`): what needs
notifications is skipped there, so the first column is the "before" figure. JSON on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PROFILE = 'description = "bench"\ncommand = ["true"]\nprompt = "stdin"\nworkspace = "none"\n'
PROFILE += "concurrency = 4\n"


def _median_ms(fn: Callable[[], Any], samples: int) -> float:
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1000, 3)


@contextlib.contextmanager
def _board(postgres: str | None) -> Iterator[Any]:
    from kanban import api, settings
    from kanban.testing import git_repo, postgres_schema

    with tempfile.TemporaryDirectory() as tmp:
        repo = git_repo(Path(tmp) / "repo")
        (repo / "profiles").mkdir()
        (repo / "profiles" / "bench.toml").write_text(PROFILE)
        with contextlib.ExitStack() as stack:
            db = (
                stack.enter_context(postgres_schema(postgres))
                if postgres
                else str(repo / ".kanban" / "board.db")
            )
            config = settings.load({"db": db, "notify_timeout": "30s"}, cwd=repo)
            board = api.connect(config)
            stack.callback(board.close)
            yield board


def _subscribe(board: Any, url: str, *, count: int, kinds: list[str] | None) -> None:
    from kanban import clock
    from kanban.board import subscriptions

    for n in range(count):
        board.tx.write(
            lambda c, n=n: subscriptions.add_subscription(
                c, name=f"s{n}", url=url, format="json", kinds=kinds, now=clock.now()
            )
        )


def _writes(board: Any, samples: int) -> dict[str, float]:
    cards = [board.add(f"card {i}", profile="bench").id for i in range(samples)]
    out = {"add": _median_ms(lambda: board.add("x", profile="bench"), samples)}
    todo = iter(cards)
    out["block"] = _median_ms(lambda: board.block(next(todo), reason="?"), samples)
    for i in range(samples):
        board.add(f"run {i}", profile="bench")

    def end_run() -> None:
        claim = board.claim()
        board.complete(claim.card_id, token=claim.token, summary="ok")

    out["end_run"] = _median_ms(end_run, samples)
    return out


def _ticks(board: Any, samples: int, after: Callable[[], Any] | None = None) -> float:
    from kanban import dispatcher
    from kanban.testing import ParkedSpawner

    for i in range(samples * 4 + 8):
        board.add(f"tick {i}", profile="bench")
    spawner = ParkedSpawner(board)
    d = dispatcher.Dispatcher(board, spawner=spawner, max_workers=4, name="bench:tick")
    durations = []
    for _ in range(samples):
        report = d.tick()
        durations.append(report.duration_ms)
        if after is not None:
            after()  # as the dispatcher's loop does: wake the courier after each tick
        started = list(spawner.pending)
        spawner.check_in()
        for card_id, token in started:
            board.complete(card_id, token=token, summary="ok")
    return round(statistics.median(durations), 3)


def measure(postgres: str | None, samples: int) -> dict[str, Any]:
    try:
        from kanban.board import subscriptions  # noqa: F401  # only on code with notifications
        from kanban.notify import courier
        from kanban.testing import Receiver
    except ImportError:
        courier = None  # type: ignore[assignment]
    configs: list[tuple[str, int, list[str] | None]] = [("none", 0, None)]
    if courier is not None:
        configs += [("10_other_kinds", 10, ["goal_done"]), ("10_matching", 10, None)]
    results: dict[str, Any] = {}
    with _board(postgres) as board:  # warm up: imports, statement caches
        _writes(board, 20)
    receiver = Receiver() if courier is not None else None
    try:
        for label, count, kinds in configs:
            with _board(postgres) as board:
                if receiver is not None:
                    _subscribe(board, receiver.url, count=count, kinds=kinds)
                figures = _writes(board, samples)
                figures["tick"] = _ticks(board, max(10, samples // 10))
                results[label] = figures
        if courier is not None and receiver is not None:
            with _board(postgres) as board:
                _subscribe(board, receiver.url, count=10, kinds=None)
                receiver.hold()  # the receiver takes every request and never answers
                stop = threading.Event()
                c = courier.Courier(board, name="bench:courier")
                thread = c.start(stop)
                try:
                    tick = _ticks(board, max(10, samples // 10), after=c.wake.set)
                    results["10_matching_hanging_receiver"] = {
                        "tick": tick,
                        "requests_hanging": len(receiver.requests),
                    }
                finally:
                    stop.set()
                    receiver.release()
                    c.wake.set()
                    thread.join(timeout=60)
    finally:
        if receiver is not None:
            receiver.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="a PostgreSQL URL (a fresh schema is used)")
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    results = measure(args.postgres, args.samples)
    print(
        json.dumps(
            {
                "backend": "postgresql" if args.postgres else "sqlite",
                "samples": args.samples,
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "python": platform.python_version(),
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
