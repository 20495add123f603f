"""What a running card costs in kanban's own processes: supervisors forked by the fork server
(`fork_server = true`, the default) against a fresh Python per supervisor (`false`), side by
side in one run.

    python -m bench.supervisors                       # handoff, CPU per card, memory at 8/32/64
    python -m bench.supervisors --samples 10 --cpu-cards 20 --memory 8,32,64

- handoff: a lone chain under `kanban dispatch --drain`; from the parent's agent's last moment
  (it notes the time, then exits) to its child's agent starting. Median and max.
- cpu: `--cpu-cards` independent trivial cards drained by 4 workers; the CPU of every process
  involved (dispatcher, fork server, supervisors, git, agents: this process is their child
  subreaper and reaps them all) per card, and the same less the agents' own CPU.
- memory: N cards whose agents sleep; the median unshared memory (USS) of their supervisors,
  plus the fork server's USS shared out over the N cards.

Modes alternate (fresh, fork, fresh, fork ...) so that both see the same machine load. Prints
JSON on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import itertools
import json
import os
import resource
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import common, ours

MODES = {"fresh": "false", "fork": "true"}


def _env(mode: str) -> dict[str, str]:
    return {**ours._env(), "KANBAN_FORK_SERVER": MODES[mode]}


def _dispatch(repo: Path, mode: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [ours.KANBAN, "dispatch", "-q", *args], cwd=repo, env=_env(mode), start_new_session=True
    )


def _reap_all() -> None:
    """Wait for every orphan that came back to us (we are a child subreaper)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def handoff(mode: str, samples: int) -> dict[str, Any]:
    with ours._repo() as repo, ours._open(repo) as board:
        chain: list[int] = []
        for i in range(samples + 1):
            chain.append(board.add(f"step {i}", profile="bench", parents=chain[-1:]).id)
        _dispatch(repo, mode, "--drain").wait(timeout=600)
        seen = common.agent_log(repo.parent / "agents.jsonl")
        gaps = [
            seen[str(child)]["start"] - seen[str(parent)]["done"]
            for parent, child in itertools.pairwise(chain)
        ]
        _reap_all()
        return {
            "samples": len(gaps),
            "median_ms": common.ms(statistics.median(gaps)),
            "max_ms": common.ms(max(gaps)),
        }


def cpu(mode: str, cards: int) -> dict[str, Any]:
    with ours._repo(workers=4) as repo, ours._open(repo) as board:
        for i in range(cards):
            board.add(f"card {i}", profile="bench")
        _reap_all()
        before = _children_cpu()
        _dispatch(repo, mode, "--drain", "--max-workers", "4").wait(timeout=1800)
        _reap_all()
        total = _children_cpu() - before
        seen = common.agent_log(repo.parent / "agents.jsonl")
        agents = sum(row.get("cpu", 0.0) for row in seen.values())
        done = sum(1 for _ in board.cards(status="done"))
        return {
            "cards": cards,
            "done": done,
            "cpu_s_per_card": round(total / cards, 3),
            "kanban_cpu_s_per_card": round((total - agents) / cards, 3),
        }


def memory(mode: str, n: int) -> dict[str, Any]:
    import psutil

    with ours._repo(agent=["--sleep", "600"], workers=n) as repo, ours._open(repo) as board:
        for i in range(n):
            board.add(f"sleeper {i}", profile="bench")
        proc = _dispatch(repo, mode, "--max-workers", str(n))
        pids: list[int] = []
        started = time.monotonic()
        try:
            deadline = time.time() + 600
            while time.time() < deadline:
                running = board.status().running
                if len(running) == n and all(r.pid for r in running):
                    break
                time.sleep(0.2)
            all_running_s = time.monotonic() - started
            running = board.status().running
            pids = [r.supervisor_pid for r in running] + [r.pid for r in running]
            supervisors = [psutil.Process(r.supervisor_pid) for r in running]
            uss = [s.memory_full_info().uss / 2**20 for s in supervisors]
            servers = {s.ppid() for s in supervisors} - {proc.pid, 1}
            server_uss = sum(psutil.Process(p).memory_full_info().uss for p in servers) / 2**20
            return {
                "running": len(running),
                "per_card_uss_mb": round(statistics.median(uss), 2),
                "fork_server_uss_mb": round(server_uss, 1),
                "per_card_with_server_mb": round(statistics.median(uss) + server_uss / n, 2),
                "all_running_s": round(all_running_s, 1),
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            _reap_all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=10, help="handoffs per mode")
    parser.add_argument("--cpu-cards", type=int, default=20)
    parser.add_argument("--memory", default="8,32,64", help="running cards, comma-separated")
    parser.add_argument("--rounds", type=int, default=1, help="fresh/fork alternations")
    args = parser.parse_args()
    libc = ctypes.CDLL(None)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: every supervisor comes back to us
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    for _ in range(args.rounds):
        for mode in MODES:
            results.setdefault(f"handoff_{mode}", []).append(handoff(mode, args.samples))
        for mode in MODES:
            results.setdefault(f"cpu_{mode}", []).append(cpu(mode, args.cpu_cards))
        for n in [int(x) for x in args.memory.split(",") if x]:
            for mode in MODES:
                results.setdefault(f"memory_{n}_{mode}", []).append(memory(mode, n))
    results["load_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
