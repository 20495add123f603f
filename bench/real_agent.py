"""What a real agent's run costs on top of the agent itself.

    python -m bench.real_agent --agent claude --runs 5
    python -m bench.real_agent --agent codex --bins DIR_WITH_CODEX

The same scripted model turn (kanban.scripted_model: the agent writes and commits a file,
then ends) is played three ways, one after another, `--runs` times each:

- `bare`: the agent's own command in an existing checkout, nothing of kanban;
- `card`: `kanban dispatch --drain` of one card of that profile (claim, worktree from the
  base branch, supervisor, the agent, reading its output, the end-of-run checks and writes);
- `empty`: `kanban dispatch --drain` of an empty board (the dispatcher's own start and stop,
  which a long-lived dispatcher pays once, not per card).

Per card, kanban adds `card - bare - empty`. Wall time and the CPU of the whole process tree
(user + system, from the OS's accounting of reaped children) are reported as medians; JSON
on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from kanban import profiles, scripted_model, testing

PROFILES = {"claude": "claude-code", "codex": "codex", "hermes": "hermes", "aider": "aider"}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(argv: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, float, int]:
    cpu, start = _children_cpu(), time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=600, check=False)
    return time.perf_counter() - start, _children_cpu() - cpu, done.returncode


def _script(agent: str) -> list[scripted_model.Step]:
    if agent == "aider":
        return [scripted_model.Edit("hello.txt", "hello"), scripted_model.Say("done")]
    commit = "echo hello > hello.txt && git add hello.txt && git commit -qm 'Add hello.txt'"
    return [scripted_model.Shell(commit), scripted_model.Say("done")]


def measure(agent: str, *, runs: int, bins: Path) -> dict[str, Any]:
    profile = profiles.load(PROFILES[agent], repo=None)
    work = Path(tempfile.mkdtemp(prefix="kanban-bench-agent-"))
    home = Path.home() / ".cache" / "kanban-bench" / "homes" / uuid.uuid4().hex[:8]
    samples: dict[str, list[tuple[float, float, int]]] = {"bare": [], "card": [], "empty": []}
    try:
        for _ in range(runs):
            with scripted_model.ScriptedModel(_script(agent)) as model:
                env = {
                    "PATH": os.pathsep.join([str(bins), os.environ["PATH"]]),
                    "HOME": str(home),
                    **scripted_model.point_agent(agent, model, home),
                }
                # bare: the agent in a checkout of its own, as a person would run it
                bare = testing.git_repo(work / uuid.uuid4().hex[:8])
                prompt = "Write hello.txt and commit it."
                (bare.parent / "prompt.md").write_text(prompt)
                values = {
                    "prompt": prompt,
                    "prompt_file": str(bare.parent / "prompt.md"),
                    "worktree": str(bare),
                    "git_dir": str(bare / ".git"),
                    "git_common_dir": str(bare / ".git"),
                    "run_dir": str(bare.parent),
                    "card_id": "1",
                    "run_id": "1",
                    "attempt": "1",
                    "title": "bench",
                    "branch": "main",
                }
                samples["bare"].append(
                    _timed(profile.argv(values), cwd=bare, env={**env, **profile.env})
                )
            with scripted_model.ScriptedModel(_script(agent)) as model:
                env.update(scripted_model.point_agent(agent, model, home))
                repo = testing.git_repo(work / uuid.uuid4().hex[:8])
                board = testing.board_in(repo)
                board.add("Write hello.txt", profile=PROFILES[agent])
                board.close()
                drain = [sys.executable, "-m", "kanban", "dispatch", "--drain", "-q"]
                samples["card"].append(_timed(drain, cwd=repo, env={**os.environ, **env}))
            empty = testing.git_repo(work / uuid.uuid4().hex[:8])
            testing.board_in(empty).close()
            samples["empty"].append(_timed(drain, cwd=empty, env={**os.environ, **env}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)

    def med(kind: str, index: int) -> float:
        return round(statistics.median(s[index] for s in samples[kind]), 3)

    result: dict[str, Any] = {"agent": agent, "runs": runs}
    for kind in samples:
        result[kind] = {
            "wall_s": med(kind, 0),
            "cpu_s": med(kind, 1),
            "exit_codes": sorted({s[2] for s in samples[kind]}),
        }
    result["kanban_per_card"] = {
        "wall_s": round(med("card", 0) - med("bare", 0) - med("empty", 0), 3),
        "cpu_s": round(med("card", 1) - med("bare", 1) - med("empty", 1), 3),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", choices=sorted(PROFILES), default="claude")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--bins",
        type=Path,
        help="directory of the agent's program (default: the realagents test cache)",
    )
    args = parser.parse_args(argv)
    cache = Path.home() / ".cache" / "kanban-test-agents"
    default = {
        "claude": cache / "npm" / "node_modules" / ".bin",
        "codex": cache / "npm" / "node_modules" / ".bin",
        "hermes": cache / "hermes" / "bin",
        "aider": cache / "aider" / "bin",
    }
    json.dump(
        measure(args.agent, runs=args.runs, bins=args.bins or default[args.agent]), sys.stdout
    )
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
