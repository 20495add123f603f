"""Fakes and factories for tests (ours and yours). Only the expensive edges are faked:
an agent is a small script that behaves like one. Databases, git and processes are real."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "kanban tests",
    "GIT_AUTHOR_EMAIL": "tests@kanban.invalid",
    "GIT_COMMITTER_NAME": "kanban tests",
    "GIT_COMMITTER_EMAIL": "tests@kanban.invalid",
}


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **GIT_ENV},
    )
    return result.stdout.strip()


def git_repo(path: Path, *, branch: str = "main") -> Path:
    """A fresh repository with one commit, a README, on `branch`."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    git(path, "config", "user.name", GIT_ENV["GIT_AUTHOR_NAME"])
    git(path, "config", "user.email", GIT_ENV["GIT_AUTHOR_EMAIL"])
    (path / "README.md").write_text("# test repository\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "initial commit")
    return path


def snapshot(engine: object) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every board table, for 'this changed nothing' assertions."""
    import sqlalchemy as sa

    from kanban.models import Base

    assert isinstance(engine, sa.Engine)
    with engine.connect() as conn:
        return {
            table.name: [
                tuple(r)
                for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns))
            ]
            for table in Base.metadata.sorted_tables
        }


def claim_until_empty(
    db: str, worker: str, out: str, go: str | None = None, complete: bool = False
) -> int:
    """Claim from the board at `db` until nothing is ready, writing one JSON line per claim
    to `out`. With `go`, wait for that file to exist first, so that several processes
    start together. Used by the concurrency tests and the claim benchmark."""
    import json
    import time

    from kanban import api

    if go is not None:
        while not os.path.exists(go):
            time.sleep(0.001)
    count = 0
    with api.open_board(db) as board, open(out, "w") as fh:
        while True:
            won = board.claim(worker=worker)
            if won is None:
                break
            if complete:
                board.complete(won.card_id, token=won.token)
            fh.write(json.dumps({"card": won.card_id, "run": won.run_id, "worker": worker}) + "\n")
            count += 1
    return count
