"""What one card's worktree costs on a big repository: full checkout against a sparse one.

    python -m bench.worktrees                 # 5,000 files in 50 directories
    python -m bench.worktrees --dirs 100 --files-per-dir 100

Generates a repository (`--dirs` directories of `--files-per-dir` Python files of ~1.2 KB),
then makes `--cards` worktrees each way with kanban's own `Worktrees.prepare`: full, and
sparse for a card whose paths are one directory (`pkg07/**`, the setting
`sparse_worktrees = true`). Prints the medians as JSON: wall time, git's CPU (the reaped
children's user + system), and the worktree's size on disk.
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

from kanban import testing, worktrees


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _disk_kib(path: Path) -> int:
    return int(subprocess.check_output(["du", "-sk", str(path)]).split()[0])


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
        for n, mode in enumerate(("full", "sparse")):
            walls, cpus, disks = [], [], []
            port = worktrees.Worktrees(repo, root=root / f"worktrees-{mode}")
            for i in range(cards):
                cpu, start = _children_cpu(), time.perf_counter()
                space = port.prepare(
                    1000 * n + i + 1,
                    f"card {i}",
                    [],
                    sparse=["pkg07/**"] if mode == "sparse" else (),
                )
                walls.append(time.perf_counter() - start)
                cpus.append(_children_cpu() - cpu)
                disks.append(_disk_kib(space.path))
            found[mode] = {
                "wall_s": round(statistics.median(walls), 3),
                "git_cpu_s": round(statistics.median(cpus), 3),
                "disk_kib": statistics.median(disks),
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
