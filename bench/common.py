"""What both sides of the benchmark share. Standard library only: the Hermes side imports it
from Hermes' own virtual environment, where kanban is not installed.

Each side is a module (`bench.ours`, `bench.hermes`) run as `python -m bench.SIDE MEASURE
'{"param": ...}'` with its own interpreter; it prints one JSON object on stdout. The same
workloads are built on both sides by the functions here, so the shapes cannot drift apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

# A claimer waits for this moment before its first claim, so every claimer is up (Python
# started, board opened) when the clock starts. Generous: eight interpreters on two cores.
CLAIM_START_DELAY = 4.0
# A claimer gives up after this many errors in a row (a board that stays locked).
MAX_ERRORS_IN_A_ROW = 200


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def median(values: Iterable[float]) -> float:
    return round(statistics.median(list(values)), 4)


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------- board shapes


def tick_board(n: int) -> tuple[int, int, int]:
    """The tick benchmark's board of `n` cards: half done, a quarter ready, a quarter waiting
    on one ready parent each. Returns (done, ready, waiting) counts; card k of the waiting
    quarter has ready card k as its parent."""
    done = n // 2
    ready = n // 4
    return done, ready, n - done - ready


def drain_graph(n: int, chains: int) -> list[list[int]]:
    """Parents (0-based indexes) of each card of the drain benchmark: `chains` independent
    chains, card i waiting on card i - chains. 200 cards in 50 chains is four steps deep."""
    return [[i - chains] if i >= chains else [] for i in range(n)]


# ---------------------------------------------------------------------- concurrent claimers


def run_claimers(side: str, params: dict[str, Any], count: int, workdir: Path) -> dict[str, Any]:
    """Start `count` claimer processes of `side` (`python -m bench.SIDE claimer PARAMS`) at
    once; each claims until the board has nothing ready and writes what it got. Returns the
    throughput, double claims (a card handed to two claimers) and errors."""
    go = time.time() + CLAIM_START_DELAY
    procs = []
    outs = []
    for i in range(count):
        out = workdir / f"claimer-{i}.json"
        outs.append(out)
        args = {**params, "go": go, "out": str(out), "name": f"claimer-{i}"}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", f"bench.{side}", "claimer", json.dumps(args)],
                cwd=Path(__file__).resolve().parent.parent,
            )
        )
    for proc in procs:
        proc.wait(timeout=900)
    reports = [json.loads(out.read_text()) for out in outs]
    claimed = Counter(card for r in reports for card in r["claimed"])
    end = max(r["end"] for r in reports)
    total = sum(claimed.values())
    errors = [e for r in reports for e in r["errors"]]
    waits = sorted(w for r in reports for w in r["waits"]) or [0.0]
    return {
        "claimers": count,
        "cards": params["cards"],
        "claimed": total,
        "unique": len(claimed),
        "double_claims": total - len(claimed),
        "errors": len(errors),
        "error_sample": sorted(set(errors))[:3],
        "seconds": round(end - go, 3),
        "per_second": round(total / (end - go), 1) if end > go else None,
        # How long one claim call took, start to return: the wait for the write lock included.
        "claim_p50_ms": ms(waits[len(waits) // 2]),
        "claim_p99_ms": ms(waits[int(len(waits) * 0.99)]),
        "claim_max_ms": ms(waits[-1]),
        # The least any one claimer got: a claimer starved by the others shows here.
        "fewest_by_one_claimer": min(len(r["claimed"]) for r in reports),
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several claim runs as one figure: the run of median throughput, with every run's rate
    beside it, and the double claims and errors of all runs added up (one is one too many)."""
    ranked = sorted(runs, key=lambda r: r["per_second"] or 0.0)
    middle = dict(ranked[len(ranked) // 2])
    middle["runs_per_second"] = [r["per_second"] for r in runs]
    middle["double_claims"] = sum(r["double_claims"] for r in runs)
    middle["errors"] = sum(r["errors"] for r in runs)
    middle["error_sample"] = sorted({e for r in runs for e in r["error_sample"]})[:3]
    return middle


def claimer_loop(claim: Callable[[], Any | None], args: dict[str, Any]) -> None:
    """One claimer: wait for the start, claim until nothing is ready, write the report.
    `claim()` returns a card id, None when the board has nothing ready, or raises."""
    while time.time() < args["go"]:
        time.sleep(0.001)
    claimed: list[Any] = []
    errors: list[str] = []
    waits: list[float] = []
    in_a_row = 0
    while in_a_row < MAX_ERRORS_IN_A_ROW:
        t0 = time.perf_counter()
        try:
            card = claim()
        except Exception as exc:  # counted, not hidden: errors are part of the figure
            errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            in_a_row += 1
            continue
        in_a_row = 0
        if card is None:
            break
        waits.append(time.perf_counter() - t0)
        claimed.append(card)
    report = {"claimed": claimed, "errors": errors, "end": time.time(), "waits": waits}
    Path(args["out"]).write_text(json.dumps(report))


# ---------------------------------------------------------------------- processes


def cli_startup(
    argv_for: dict[str, Sequence[str]], *, env: dict[str, str], cwd: Path, samples: int
) -> dict[str, float]:
    """Median wall time of each command line (one warm-up run first), in milliseconds."""
    result = {}
    for name, argv in argv_for.items():
        times = []
        for i in range(samples + 1):
            t0 = time.perf_counter()
            subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
            if i:
                times.append(time.perf_counter() - t0)
        result[f"{name}_ms"] = ms(median(times))
    return result


def settle(agents: Iterable[subprocess.Popen[Any]], *, grace: float = 10.0) -> int:
    """Wait up to `grace` seconds in all for agents still running at the end of a measure,
    then kill the rest, and reap every one: an agent must not outlive the directory it
    writes into. Returns how many had to be killed."""
    deadline = time.monotonic() + grace
    killed = 0
    for proc in agents:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed += 1
    return killed


def remove_tree(path: Path, *, attempts: int = 5) -> None:
    """rmtree that survives a late writer: a file created while the tree is being removed
    makes `rmdir` fail with ENOTEMPTY; try again a few times, then leave what is left."""
    for attempt in range(attempts):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1 * (attempt + 1))
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def scratch(agents: Sequence[subprocess.Popen[Any]] = (), *, grace: float = 10.0) -> Iterator[str]:
    """A temporary directory for one measure, removed after its `agents` (a list the
    measure fills as it starts them) are settled: the Hermes drain once crashed in
    TemporaryDirectory's cleanup while an agent still wrote into it."""
    path = tempfile.mkdtemp(prefix="kanban-bench-")
    try:
        yield path
    finally:
        settle(agents, grace=grace)
        remove_tree(Path(path))


def agent_log(path: Path) -> dict[str, dict[str, float]]:
    """What the bench agents wrote: card -> {"start": t, "done": t} (wall-clock seconds)."""
    seen: dict[str, dict[str, float]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            seen.setdefault(str(row["card"]), {}).update(
                {k: v for k, v in row.items() if k != "card"}
            )
    return seen


def main(measures: dict[str, Callable[[dict[str, Any]], Any]]) -> int:
    """A side's entry point: `python -m bench.SIDE MEASURE 'JSON params'`."""
    name, params = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    result = measures[name](params)
    if result is not None:
        sys.stdout.write(json.dumps(result) + "\n")
    return 0


def environ(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}
