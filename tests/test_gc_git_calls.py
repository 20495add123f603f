"""`kanban gc` asks git what it needs once: one `git status` per worktree and one
`git worktree list` in all (it ran `status` twice per tree and `worktree list` per tree)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kanban import maintenance, worktrees
from kanban.testing import board_in


def test_gc_runs_one_status_per_worktree_and_one_worktree_list(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with board_in(repo) as b:
        port = worktrees.Worktrees(repo, root=b.settings.worktrees)
        for n in range(10):
            card = b.add(f"card {n}")
            port.prepare(card.id, card.title, [])
            b.complete(card.id)
        dirty = port.names(1, "card 0")[0]
        (dirty / "unsaved.txt").write_text("keep me")
        calls: Counter[str] = Counter()
        real = worktrees.Worktrees._git

        def counting(self: worktrees.Worktrees, *args: str, **kwargs: Any) -> str:
            calls[" ".join(args[:2])] += 1
            return real(self, *args, **kwargs)

        monkeypatch.setattr(worktrees.Worktrees, "_git", counting)
        report = maintenance.gc(b)
    assert len(report["removed"]) == 9 and list(report["kept"]) == [str(dirty)]
    assert dirty.is_dir()  # never delete a dirty worktree
    statuses = sum(n for name, n in calls.items() if name.startswith("status"))
    assert statuses == 10
    assert calls["worktree list"] == 1
    assert calls["worktree remove"] == 9
