"""python -m bench.web: the web board (`kanban serve`) on a big board.

    python -m bench.web                       # 10,000 cards, 1,000 not done, 20 samples
    python -m bench.web --cards 500 --open 100 --samples 3   # a smoke run

Builds a SQLite board of CARDS cards of which OPEN are not done, starts a real `kanban serve`
on it, and measures:
  - server time of the board page and of GET /api/cards (the app's Server-Timing header:
    the time until the response starts, the body already rendered) and the time a client
    on loopback waits for the whole answer;
  - how long an event takes from its commit (a card added by this process) to the open
    board page in Chromium showing the card, without a reload (p50, p95, max);
  - the server's resident memory (RSS) after all of it.
Prints one JSON object. Needs /usr/bin/chromium for the event-to-page figure (else skipped).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")


def build(directory: Path, *, cards: int, open_: int) -> Path:
    from kanban import api, board, clock, settings
    from kanban.states import CardStatus
    from kanban.testing import git_repo

    repo = git_repo(directory / "repo")
    db = repo / ".kanban" / "board.db"
    db.parent.mkdir(exist_ok=True)
    b = api.connect(settings.load({"db": str(db)}, cwd=repo))
    profiles = ["demo", "shell", "claude-code", "codex"]

    def fill(conn: Any) -> None:
        now = clock.now()
        for i in range(cards):
            card = board.add_card(
                conn,
                title=f"card {i}: make the thing number {i} work",
                body="Some detail for the agent.\n" * 3,
                profile=profiles[i % len(profiles)],
                parents=(),
                priority=i % 3,
                paths=None,
                max_attempts=None,
                timeout=None,
                key=None,
                review=False,
                triage=False,
                max_cost_usd=None,
                actor="bench",
                now=now,
            )[0]
            if i >= open_:
                board.move(conn, card_id=card.id, to=CardStatus.DONE, now=now, actor="bench")

    b.tx.write(fill)
    b.close()
    return repo


def fetch(url: str) -> tuple[float, float]:
    """(server ms from Server-Timing, client ms for the whole answer)."""
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as answer:  # http on loopback
        answer.read()
        timing = answer.headers.get("server-timing", "app;dur=nan")
    client = (time.perf_counter() - t0) * 1000
    return float(timing.split("dur=")[1]), client


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 1),
        "max_ms": round(ordered[-1], 1),
    }


def page_latency(base: str, repo: Path, samples: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from kanban.testing import board_in

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    lags = []
    with sync_playwright() as p, board_in(repo) as b:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{base}/", timeout=120_000)
        page.wait_for_selector("#live.on", timeout=60_000)
        for i in range(samples):
            t0 = time.perf_counter()
            card = b.add(f"live sample {i}", profile="demo")
            page.wait_for_selector(f'[data-card="{card.id}"]', state="attached", timeout=60_000)
            lags.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.3)
        browser.close()
    return summary(lags) | {"samples": samples}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import psutil

    from kanban.testing import serve_process

    parser = argparse.ArgumentParser(prog="python -m bench.web")
    parser.add_argument("--cards", type=int, default=10_000)
    parser.add_argument("--open", type=int, default=1_000, dest="open_")
    parser.add_argument("--samples", type=int, default=20)
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kanban-bench-web-") as tmp:
        t0 = time.perf_counter()
        repo = build(Path(tmp), cards=opts.cards, open_=opts.open_)
        built = time.perf_counter() - t0
        proc, base = serve_process(repo)
        try:
            server = psutil.Process(proc.pid)
            fetch(f"{base}/")  # warm: templates compiled, connections open
            results: dict[str, Any] = {}
            for name, path in (("board_page", "/"), ("api_cards", "/api/cards")):
                timings = [fetch(base + path) for _ in range(opts.samples)]
                results[name] = {
                    "server": summary([s for s, _ in timings]),
                    "client": summary([c for _, c in timings]),
                }
            if CHROMIUM.exists():
                results["event_to_page"] = page_latency(base, repo, opts.samples)
            results["server_rss_mb"] = round(server.memory_info().rss / 1e6, 1)
        finally:
            proc.terminate()
            proc.communicate(timeout=30)
    return {
        "bench": "web",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
            "load_1m": round(os.getloadavg()[0], 2),
        },
        "cards": opts.cards,
        "not_done": opts.open_,
        "build_seconds": round(built, 1),
        **results,
    }


if __name__ == "__main__":
    json.dump(main(), sys.stdout, indent=2)
    sys.stdout.write("\n")
