"""Fixtures: real SQLite files, real git repositories, real processes. Nothing is mocked
below the agent: the database, git and signals are the real thing.

Every test that takes a board (`board`, `board_url`, `repo_db`, `cli`) runs twice: on a
SQLite file, and on PostgreSQL in a fresh schema when KANBAN_TEST_POSTGRES_URL names a server
(`postgresql+psycopg://postgres@127.0.0.1:5432/test`); without it the PostgreSQL half is
skipped, saying so.
"""

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
from kanban.testing import POSTGRES_ENV, git_repo, postgres_schema, use_board

retrying.set_testing(True)

# Read before the loop below hides it: processes the tests start get their board explicitly.
POSTGRES_URL = os.environ.get(POSTGRES_ENV)

# Tests must not see the developer's own board or identity.
for _name in [k for k in os.environ if k.startswith("KANBAN_")]:
    del os.environ[_name]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit on `main`."""
    return git_repo(tmp_path / "repo")


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database under the board: the one parametrized fixture every board test uses."""
    _skip_without_postgres(request.param)
    return str(request.param)


def _skip_without_postgres(backend: str) -> None:
    if backend == "postgres" and not POSTGRES_URL:
        pytest.skip(
            f"PostgreSQL half: set {POSTGRES_ENV}=postgresql+psycopg://USER@HOST/DB to run it"
        )


@pytest.fixture
def postgres_url(backend: str) -> Iterator[str | None]:
    """A fresh PostgreSQL schema for this test (dropped afterwards); None on SQLite."""
    if backend != "postgres":
        yield None
        return
    assert POSTGRES_URL is not None
    with postgres_schema(POSTGRES_URL) as url:
        yield url


@pytest.fixture
def shared_postgres_url() -> Iterator[str]:
    """PostgreSQL only (tests of several hosts on one board): a fresh schema, or a skip."""
    if not POSTGRES_URL:
        pytest.skip(f"needs PostgreSQL: set {POSTGRES_ENV}=postgresql+psycopg://USER@HOST/DB")
    with postgres_schema(POSTGRES_URL) as url:
        yield url


@pytest.fixture
def board_url(postgres_url: str | None, tmp_path: Path) -> str:
    """The board as --db takes it: a file in tmp_path, or the test's PostgreSQL schema."""
    return postgres_url or str(tmp_path / "board.db")


@pytest.fixture
def repo_db(postgres_url: str | None, repo: Path) -> str:
    """The board of `repo`: its `.kanban/board.db`, or the test's PostgreSQL schema, which
    `repo`'s `.kanban/config.toml` then names (so `board_in(repo)` and every `kanban` process
    started in `repo` use it, as on a host set up with `kanban --db URL init`)."""
    if postgres_url is None:
        return str(repo / ".kanban" / "board.db")
    use_board(repo, postgres_url)
    return postgres_url


@pytest.fixture(scope="module", params=BACKENDS)
def module_postgres_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """`postgres_url` for module-scoped fixtures (a board worked once, read by many tests)."""
    _skip_without_postgres(request.param)
    if request.param != "postgres":
        yield None
        return
    assert POSTGRES_URL is not None
    with postgres_schema(POSTGRES_URL) as url:
        yield url


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
    kanban.open_board(board_url).close()  # as `kanban init` would (no other command creates one)
    return Cli(board_url, tmp_path)
