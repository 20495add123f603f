"""Fixtures: real SQLite files, real git repositories, real processes. Nothing is mocked
below the agent: the database, git and signals are the real thing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import kanban
from kanban import retrying
from kanban.testing import git_repo

retrying.set_testing(True)

# Tests must not see the developer's own board or identity.
for _name in [k for k in os.environ if k.startswith("KANBAN_")]:
    del os.environ[_name]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit on `main`."""
    return git_repo(tmp_path / "repo")


@pytest.fixture
def board_url(tmp_path: Path) -> str:
    return str(tmp_path / "board.db")


@pytest.fixture
def board(board_url: str) -> Iterator[kanban.Board]:
    with kanban.open_board(board_url) as b:
        yield b


class Cli:
    """Run `kanban` in-process (fast) against one board; `.run_process` for the real binary."""

    def __init__(self, db: str, cwd: Path) -> None:
        self.db = db
        self.cwd = cwd
        self.runner = CliRunner()

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        from kanban.cli import cli

        old = Path.cwd()
        os.chdir(self.cwd)
        try:
            return self.runner.invoke(
                cli, ["--db", self.db, *args], input=input, env=env, catch_exceptions=False
            )
        finally:
            os.chdir(old)

    def ok(self, *args: str, **kwargs: object) -> Result:
        result = self(*args, **kwargs)  # type: ignore[arg-type]
        assert result.exit_code == 0, result.output
        return result

    def run_process(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kanban", "--db", self.db, *args],
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )


@pytest.fixture
def cli(board_url: str, tmp_path: Path) -> Cli:
    return Cli(board_url, tmp_path)
