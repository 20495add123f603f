"""What a real agent's run costs on top of the agent itself.

    python -m bench.real_agent --agent claude --cards 5 --rounds 3
    python -m bench.real_agent --agent codex --bins DIR_WITH_CODEX

The same scripted model turn (kanban.scripted_model: the agent writes and commits a file,
then ends) is played three ways in each round:

- `bare`: the agent's own command, `--cards` times one after another, each in a checkout of
  its own: nothing of kanban;
- `cards`: one `kanban dispatch --drain --max-workers 1` of `--cards` cards of that profile
  (claims, a worktree each, supervisors, the agents, reading their output, end-of-run checks
  and writes);
- `empty`: the same drain of an empty board (the dispatcher's own start and stop, which a
  long-lived dispatcher pays once, not per card).

Per card, kanban adds `(cards - bare - empty) / --cards`. Wall time and the CPU of the whole
process tree (user + system, from the OS's accounting of reaped children), medians over the
rounds; JSON on stdout.
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


def _values(checkout: Path) -> dict[str, str]:
    """The profile's placeholders for a run outside kanban: no socket, no MCP server."""
    mcp_config = checkout.parent / "mcp.json"
    mcp_config.write_text('{"mcpServers": {}}')
    return {
        "mcp_config": str(mcp_config),
        "kanban": "kanban",
        "socket": str(checkout.parent / "no-socket"),
        "prompt": "Write hello.txt and commit it.",
        "prompt_file": str(checkout.parent / "prompt.md"),
        "worktree": str(checkout),
        "git_dir": str(checkout / ".git"),
        "git_common_dir": str(checkout / ".git"),
        "run_dir": str(checkout.parent),
        "card_id": "1",
        "run_id": "1",
        "attempt": "1",
        "title": "bench",
        "branch": "main",
    }


def measure(agent: str, *, cards: int, rounds: int, bins: Path) -> dict[str, Any]:
    """`rounds` times: `cards` bare agent runs one after another, then one drain of `cards`
    cards (one worker), then a drain of an empty board; medians over the rounds."""
    profile = profiles.load(PROFILES[agent], repo=None)
    work = Path(tempfile.mkdtemp(prefix="kanban-bench-agent-"))
    home = Path.home() / ".cache" / "kanban-bench" / "homes" / uuid.uuid4().hex[:8]
    samples: dict[str, list[tuple[float, float]]] = {"bare": [], "cards": [], "empty": []}
    drain = [sys.executable, "-m", "kanban", "dispatch", "--drain", "-q", "--max-workers", "1"]
    try:
        for _ in range(rounds):
            with scripted_model.ScriptedModel(_script(agent)) as model:
                env = {
                    "PATH": os.pathsep.join([str(bins), os.environ["PATH"]]),
                    "HOME": str(home),
                    **scripted_model.point_agent(agent, model, home),
                }
                wall = cpu = 0.0
                for _ in range(cards):  # the agent alone, in a checkout of its own
                    bare = testing.git_repo(work / uuid.uuid4().hex[:8])
                    (bare.parent / "prompt.md").write_text("Write hello.txt and commit it.")
                    argv = profile.argv(_values(bare))
                    took, used, _code = _timed(argv, cwd=bare, env={**env, **profile.env})
                    wall, cpu = wall + took, cpu + used
                samples["bare"].append((wall, cpu))
                repo = testing.git_repo(work / uuid.uuid4().hex[:8])
                board = testing.board_in(repo)
                for n in range(cards):
                    board.add(f"Write hello.txt ({n})", profile=PROFILES[agent])
                board.close()
                took, used, _code = _timed(drain, cwd=repo, env={**os.environ, **env})
                samples["cards"].append((took, used))
            empty = testing.git_repo(work / uuid.uuid4().hex[:8])
            testing.board_in(empty).close()
            took, used, _code = _timed(drain, cwd=empty, env={**os.environ, **env})
            samples["empty"].append((took, used))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)

    def med(kind: str, index: int) -> float:
        return statistics.median(s[index] for s in samples[kind])

    result: dict[str, Any] = {"agent": agent, "cards_per_round": cards, "rounds": rounds}
    for kind in samples:
        result[kind] = {"wall_s": round(med(kind, 0), 3), "cpu_s": round(med(kind, 1), 3)}
    result["kanban_per_card"] = {
        f"{what}_s": round((med("cards", i) - med("bare", i) - med("empty", i)) / cards, 3)
        for i, what in enumerate(("wall", "cpu"))
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", choices=sorted(PROFILES), default="claude")
    parser.add_argument("--cards", type=int, default=5, help="cards (and bare runs) per round")
    parser.add_argument("--rounds", type=int, default=3)
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
    bins = args.bins or default[args.agent]
    json.dump(measure(args.agent, cards=args.cards, rounds=args.rounds, bins=bins), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
