"""`kanban demo`: a real board, real worktrees and real processes, in a throwaway repository.

Builds a small dependency graph of cards for the demo agent, runs the dispatcher until the
board drains, and reports what happened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kanban import api, dispatcher, settings, testing, views

# (title, parents by index, body)
GRAPH: list[tuple[str, list[int], str]] = [
    ("Design the data model", [], "demo: sleep 0.8"),
    ("Write the storage layer", [0], "demo: sleep 1.2"),
    ("Write the HTTP API", [0], "demo: sleep 1.0"),
    ("Set up continuous integration", [], "demo: sleep 0.6"),
    (
        "Validate API input",
        [2],
        "demo: sleep 0.5\ndemo: fail-once the validator crashed on empty input",
    ),
    ("Write the command line", [1], "demo: sleep 0.9"),
    ("Integration tests", [1, 2, 4], "demo: sleep 1.0"),
    ("Write the user guide", [5, 6], "demo: sleep 0.7\ndemo: follow-up Proofread the user guide"),
]


@dataclasses.dataclass(frozen=True)
class DemoResult:
    repo: Path
    cards: list[views.CardView]
    runs: int
    failed_attempts: int
    branches: list[str]
    handoffs: list[float]  # seconds from a parent's end to its child's agent starting
    elapsed: float


def run(
    *,
    directory: Path | None = None,
    workers: int = 4,
    on_tick: Callable[[api.Board], None] | None = None,
    timeout: float = 300.0,
) -> DemoResult:
    root = Path(directory or tempfile.mkdtemp(prefix="kanban-demo-")).absolute()
    repo = testing.git_repo(root / "project")
    (repo / ".git" / "info" / "exclude").write_text("/.kanban/\n/worktrees/\n")
    config = settings.load(
        {
            "db": str(repo / ".kanban" / "board.db"),
            "heartbeat_interval": "1s",
            "lease_ttl": "15s",
            "backoff_base": "0.5s",
            "backoff_cap": "5s",
        },
        cwd=repo,
    )
    board = api.connect(config)
    ids: list[int] = []
    for title, parents, body in GRAPH:
        ids.append(
            board.add(title, profile="demo", parents=[ids[p] for p in parents], body=body).id
        )
    stop = threading.Event()
    started = time.monotonic()
    loop = dispatcher.Dispatcher(board, max_workers=workers, interval=30.0)
    worker = threading.Thread(
        target=loop.run,
        kwargs={"stop": stop, "until": lambda _r: loop.drained()},
        daemon=True,
    )
    worker.start()
    while worker.is_alive() and time.monotonic() - started < timeout:
        if on_tick is not None:
            on_tick(board)
        worker.join(timeout=0.25)
    stop.set()
    worker.join(timeout=30)
    elapsed = time.monotonic() - started
    _wait_for_supervisors(loop)
    if on_tick is not None:
        on_tick(board)  # the final picture
    cards = board.cards()
    details = [board.show(c.id) for c in cards]
    runs = [r for d in details for r in d.runs]
    ended = {
        d.card.id: max(
            (r.ended_at for r in d.runs if r.outcome == "done" and r.ended_at), default=None
        )
        for d in details
    }
    handoffs = []
    for d in details:
        first = next((r for r in d.runs if r.started_at), None)
        parent_ends = [ended.get(p) for p in d.card.parents]
        if first and first.started_at and parent_ends and all(parent_ends):
            last_parent = max(e for e in parent_ends if e is not None)
            handoffs.append((first.started_at - last_parent).total_seconds())
    branches = subprocess.run(
        ["git", "branch", "--list", "kanban/*", "--format=%(refname:short)"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    board.close()
    return DemoResult(
        repo=repo,
        cards=cards,
        runs=len(runs),
        failed_attempts=sum(1 for r in runs if r.outcome not in ("done", None)),
        branches=branches,
        handoffs=handoffs,
        elapsed=elapsed,
    )


def _wait_for_supervisors(loop: dispatcher.Dispatcher, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for child in loop.children.values():
        left = max(0.1, deadline - time.monotonic())
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=left)
