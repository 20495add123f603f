"""The tick on SQLite and PostgreSQL side by side, robust to a loaded machine.

    python -m bench.tick_pair --cards 100000 --samples 20 --rounds 3 \
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
    python -m bench.tick_pair --cards 1000 --round-trips --postgres URL

The workload is `bench.ours.tick`'s (a board of N cards, half done, a quarter ready, a quarter
waiting; eight workers, supervisors parked), but every sample is kept: the minimum and the
median of the idle ticks and of the ticks after one completion, for SQLite then PostgreSQL,
`--rounds` times, with the load average before each round. Ratios are taken within a round.

`--round-trips` counts what one tick sends to PostgreSQL through psycopg's pure-Python libpq
wrapper (`PSYCOPG_IMPL=python`): every query, BEGIN, COMMIT, ping and prepare is one round trip.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any


def _tick(cards: int, url: str | None, samples: int) -> dict[str, float]:
    from bench import common, ours
    from kanban import dispatcher
    from kanban.testing import ParkedSpawner

    with ours._repo() as repo, ours._board(url, repo) as (board, _):
        done, ready, waiting = common.tick_board(cards)
        statuses = ["done"] * done + ["ready"] * ready + ["todo"] * waiting
        links = [(done + i, done + ready + i) for i in range(waiting)]
        ours._bulk(board, statuses, links)
        spawner = ParkedSpawner(board)
        loop = dispatcher.Dispatcher(board, max_workers=8, spawner=spawner)

        def once() -> float:
            t0 = time.perf_counter()
            loop.tick()
            seconds = time.perf_counter() - t0
            spawner.check_in()  # the supervisors' work, in their processes: not timed
            return seconds * 1000

        once()  # the first tick (promotes across the board): not compared here
        idle = [once() for _ in range(samples)]
        after = []
        for _ in range(samples):
            run_id, token = next(iter(loop.tokens.items()))
            card_id = next(r.card_id for r in board.status().running if r.id == run_id)
            board.complete(card_id, token=token, summary="done")
            loop.tokens.pop(run_id)
            after.append(once())
    return {
        "idle_min_ms": round(min(idle), 2),
        "idle_median_ms": round(statistics.median(idle), 2),
        "after_complete_min_ms": round(min(after), 2),
        "after_complete_median_ms": round(statistics.median(after), 2),
    }


def _round_trips(cards: int, url: str) -> list[tuple[str, list[str]]]:
    """What each tick sent: (kind of tick, the commands) for the idle and after-completion
    ticks of a small run."""
    import psycopg.pq.pq_ctypes as pq

    sent: list[str] = []
    counting = [False]
    for name in ("exec_", "exec_params", "send_query", "send_query_params"):
        _wrap(pq.PGconn, name, sent, counting)
    for name in ("send_prepare", "send_query_prepared", "exec_prepared", "prepare"):
        _wrap(pq.PGconn, name, sent, counting)
    from kanban import dispatcher

    ticks: list[list[str]] = []
    original = dispatcher.Dispatcher.tick

    def tick(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent.clear()
        counting[0] = True
        try:
            return original(self, *args, **kwargs)
        finally:
            counting[0] = False
            ticks.append(list(sent))

    dispatcher.Dispatcher.tick = tick  # type: ignore[method-assign]
    try:
        _tick(cards, url, 3)
    finally:
        dispatcher.Dispatcher.tick = original  # type: ignore[method-assign]
    kinds = ["first"] + ["idle"] * 3 + ["after one completion"] * 3
    return list(zip(kinds, ticks, strict=False))


def _wrap(cls: Any, name: str, sent: list[str], counting: list[bool]) -> None:
    original = getattr(cls, name, None)
    if original is None:
        return

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if counting[0]:
            query = args[0] if args else b""
            text = bytes(query).decode(errors="replace") if isinstance(query, bytes) else query
            sent.append(f"{name}: {' '.join(str(text).split())[:80]}")
        return original(self, *args, **kwargs)

    setattr(cls, name, call)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", required=True, help="a server URL (a schema is made)")
    parser.add_argument("--round-trips", action="store_true")
    args = parser.parse_args(argv)
    if args.round_trips:
        if os.environ.get("PSYCOPG_IMPL") != "python":
            os.environ["PSYCOPG_IMPL"] = "python"
            os.execv(sys.executable, [sys.executable, "-m", "bench.tick_pair", *sys.argv[1:]])
        for kind, sent in _round_trips(args.cards, args.postgres):
            print(json.dumps({"tick": kind, "round_trips": len(sent)}))
        for line in sent:
            print("   ", line)
        return 0
    for n in range(args.rounds):
        load = os.getloadavg()
        row: dict[str, Any] = {"round": n + 1, "cards": args.cards, "load": load}
        row["sqlite"] = _tick(args.cards, None, args.samples)
        row["postgres"] = _tick(args.cards, args.postgres, args.samples)
        for key in ("after_complete_min_ms", "after_complete_median_ms"):
            row[f"ratio_{key[:-3]}"] = round(row["postgres"][key] / row["sqlite"][key], 2)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
