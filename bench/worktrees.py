"""What one card's worktree costs on a big repository: a fresh checkout, a reused one, a sparse one.

    python -m bench.worktrees                 # 5,000 files in 50 directories
    python -m bench.worktrees --dirs 100 --files-per-dir 100

Generates a repository (`--dirs` directories of `--files-per-dir` Python files of ~1.2 KB),
then makes `--cards` worktrees each way, interleaved, with kanban's own `Worktrees.prepare`:
full (`git worktree add`), reuse (a finished card's tree from the pool reset for the card,
setting `reuse_worktrees = true`), and sparse for a card whose paths are one directory
(`pkg07/**`, setting `sparse_worktrees = true`). Prints the medians as JSON: wall time, git's
CPU (the reaped children's user + system), the worktree's size on disk, and the disk the card
added (worktree root and `.git` before and after).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kanban import testing, worktree_pool, worktrees


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _disk_kib(path: Path) -> int:
    return int(subprocess.check_output(["du", "-sk", str(path)]).split()[0])


MODES = ("full", "reuse", "sparse")


def measure(*, dirs: int, files_per_dir: int, cards: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="kanban-bench-worktrees-"))
    try:
        repo = testing.git_repo(root / "repo")
        for d in range(dirs):
            for f in range(files_per_dir):
                path = repo / f"pkg{d:02d}" / f"mod{f:03d}.py"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f"# module {d}/{f}\n" + "x = 1\n" * 200)
        testing.git(repo, "add", "-A")
        testing.git(repo, "commit", "-q", "-m", "a big tree")
        found: dict[str, Any] = {"files": dirs * files_per_dir, "card_paths": ["pkg07/**"]}
        ports = {mode: worktrees.Worktrees(repo, root=root / f"worktrees-{mode}") for mode in MODES}
        for port in ports.values():
            port.root.mkdir(parents=True)
        pool = worktree_pool.Pool(ports["reuse"], limit=1)
        ports["reuse"].pool = pool
        # The pool starts with one finished card's tree (it fills as cards finish).
        warm = ports["reuse"].prepare(1, "finished card", [])
        pool.put(warm.path)
        samples: dict[str, dict[str, list[float]]] = {
            m: {"wall_s": [], "git_cpu_s": [], "disk_kib": [], "new_disk_kib": []} for m in MODES
        }
        for i in range(cards):
            for n, mode in enumerate(MODES):  # interleaved: each card made every way in turn
                port = ports[mode]
                before = _disk_kib(port.root) + _disk_kib(repo / ".git")
                cpu, start = _children_cpu(), time.perf_counter()
                space = port.prepare(
                    1000 * (n + 1) + i,
                    f"card {i}",
                    [],
                    sparse=["pkg07/**"] if mode == "sparse" else (),
                )
                samples[mode]["wall_s"].append(time.perf_counter() - start)
                samples[mode]["git_cpu_s"].append(_children_cpu() - cpu)
                after = _disk_kib(port.root) + _disk_kib(repo / ".git")
                samples[mode]["disk_kib"].append(_disk_kib(space.path))
                samples[mode]["new_disk_kib"].append(after - before)
                if mode == "reuse":
                    assert space.pooled, "the reused card did not get the pooled tree"
                    pool.put(space.path)  # the card is done: back to the pool (not timed)
        for mode in MODES:
            found[mode] = {k: round(statistics.median(v), 3) for k, v in samples[mode].items()}
        for mode in ("reuse", "sparse"):
            found[f"{mode}_vs_full"] = {
                k: round(found[mode][k] / found["full"][k], 2)
                for k in ("wall_s", "git_cpu_s")
                if found["full"][k]
            }
        return found
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dirs", type=int, default=50)
    parser.add_argument("--files-per-dir", type=int, default=100)
    parser.add_argument("--cards", type=int, default=5)
    args = parser.parse_args(argv)
    result = measure(dirs=args.dirs, files_per_dir=args.files_per_dir, cards=args.cards)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
