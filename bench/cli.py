"""Our CLI against Hermes', command by command, interleaved: status, add, show, complete.

    python -m bench.cli                       # 15 rounds, Hermes from bench's own venv
    python -m bench.cli --rounds 31 --hermes PATH/TO/hermes

Each side gets a fresh board with 20 cards (ours: a git repository with `kanban init`; Hermes:
a fresh HERMES_HOME). Each round runs every command once on each side, the two sides in turn
(who goes first alternates by round), so a load spike from the machine's other work falls on
both. `complete` closes a card made for it, one per round. Prints the medians (milliseconds)
of wall time and of the command's CPU (user + system), and ours over Hermes', as JSON.

| ours | Hermes |
|---|---|
| `kanban status` | `hermes kanban stats` |
| `kanban add TITLE` | `hermes kanban create TITLE` |
| `kanban show ID` | `hermes kanban show ID` |
| `kanban complete ID --summary S` | `hermes kanban complete ID --summary S` |
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COMMANDS = ("status", "add", "show", "complete")
SEED = 20


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: Sequence[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the reaped process, its output)."""
    cpu, t0 = _cpu(), time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0, _cpu() - cpu, proc.stdout


class Side:
    def __init__(self, name: str, base: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.name, self.base, self.cwd, self.env = name, base, cwd, env
        self.times: dict[str, list[float]] = {c: [] for c in COMMANDS}
        self.cpu: dict[str, list[float]] = {c: [] for c in COMMANDS}
        self.to_complete: list[str] = []
        self.shown = ""

    def run(self, *args: str) -> tuple[float, float, str]:
        return _run([*self.base, *args], cwd=self.cwd, env=self.env)


class Ours(Side):
    def add_argv(self, title: str) -> list[str]:
        return ["add", title]

    def new_id(self, out: str) -> str:
        return re.search(r"added card (\d+)", out).group(1)  # type: ignore[union-attr]

    def argv(self, command: str, round_: int) -> list[str]:
        return {
            "status": ["status"],
            "add": ["add", f"card added in round {round_}"],
            "show": ["show", self.shown],
            "complete": ["complete", self.to_complete[round_ + 1], "--summary", "done"],
        }[command]


class Hermes(Side):
    def add_argv(self, title: str) -> list[str]:
        return ["kanban", "create", title]

    def new_id(self, out: str) -> str:
        return re.search(r"Created (t_[0-9a-f]+)", out).group(1)  # type: ignore[union-attr]

    def argv(self, command: str, round_: int) -> list[str]:
        return {
            "status": ["kanban", "stats"],
            "add": ["kanban", "create", f"card added in round {round_}"],
            "show": ["kanban", "show", self.shown],
            "complete": ["kanban", "complete", self.to_complete[round_ + 1], "--summary", "done"],
        }[command]


def _seed(side: Ours | Hermes, rounds: int) -> None:
    ids = [side.new_id(side.run(*side.add_argv(f"seed card {i}"))[2]) for i in range(SEED)]
    side.shown = ids[0]
    side.to_complete = [
        side.new_id(side.run(*side.add_argv(f"to complete {i}"))[2]) for i in range(rounds + 1)
    ]  # the first for the warm-up


def measure(*, hermes: str, kanban: str, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kanban-bench-cli-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KANBAN_", "HERMES_"))}
        git_env = {
            **env,
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@localhost",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@localhost",
        }
        for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "i"]):
            subprocess.run(["git", *args], cwd=repo, env=git_env, check=True)
        ours = Ours("ours", [kanban], cwd=repo, env=env)
        ours.run("init")
        home = Path(tmp) / "hermes-home"
        home.mkdir()
        theirs = Hermes("hermes", [hermes], cwd=Path(tmp), env={**env, "HERMES_HOME": str(home)})
        for side in (ours, theirs):
            _seed(side, rounds)
            for command in COMMANDS:  # one warm-up of each (page cache, .pyc files)
                side.run(*side.argv(command, -1))
        for r in range(rounds):
            for command in COMMANDS:
                pair = (ours, theirs) if r % 2 == 0 else (theirs, ours)
                for side in pair:
                    wall, cpu, _ = side.run(*side.argv(command, r))
                    side.times[command].append(wall)
                    side.cpu[command].append(cpu)
        result: dict[str, Any] = {"rounds": rounds}
        for command in COMMANDS:
            mine = statistics.median(ours.times[command])
            hers = statistics.median(theirs.times[command])
            my_cpu = statistics.median(ours.cpu[command])
            her_cpu = statistics.median(theirs.cpu[command])
            result[command] = {
                "ours_ms": round(mine * 1000, 1),
                "hermes_ms": round(hers * 1000, 1),
                "ratio": round(mine / hers, 2),
                "ours_cpu_ms": round(my_cpu * 1000, 1),
                "hermes_cpu_ms": round(her_cpu * 1000, 1),
                "cpu_ratio": round(my_cpu / her_cpu, 2),
            }
        return result


def _default_hermes() -> str:
    from bench.__main__ import HERMES_VERSION, hermes_python

    return str(Path(hermes_python(None, HERMES_VERSION)).parent / "hermes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--hermes", help="the `hermes` program (default: bench's own venv)")
    parser.add_argument("--kanban", default=str(Path(sys.executable).parent / "kanban"))
    args = parser.parse_args(argv)
    result = measure(
        hermes=args.hermes or _default_hermes(), kanban=args.kanban, rounds=args.rounds
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
