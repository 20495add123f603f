"""Refusals of the board core: one line saying what was wrong, non-zero exit, no change."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from kanban.cli import cli as kanban_cli


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


def _run(args: list[str], cwd: Path) -> tuple[int, str]:
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(kanban_cli, args, catch_exceptions=False)
    finally:
        os.chdir(old)
    return result.exit_code, result.output


def _board(tmp_path: Path) -> Path:
    path = tmp_path / "board.db"
    assert _run(["--db", str(path), "init"], tmp_path)[0] == 0  # only init creates a board
    assert _run(["--db", str(path), "add", "existing card"], tmp_path)[0] == 0
    return path


def _newer_board(tmp_path: Path) -> Path:
    path = _board(tmp_path)
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = 'ffff'")
    con.commit()
    con.close()
    return path


def _not_a_board(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("shopping list\n")
    return path


def _other_sqlite(tmp_path: Path) -> Path:
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE recipes (name TEXT)")
    con.commit()
    con.close()
    return path


CASES = [
    # (id, make the board, arguments after --db, expected words)
    ("unknown card", _board, ["show", "42"], "no card 42"),
    ("unknown card on complete", _board, ["complete", "42"], "no card 42"),
    ("bad card id", _board, ["show", "abc"], "positive number"),
    ("unknown state filter", _board, ["ls", "--status", "finished"], "unknown status 'finished'"),
    ("empty title", _board, ["add", "   "], "needs a title"),
    ("title with newline", _board, ["add", "two\nlines"], "one line"),
    ("unknown parent", _board, ["add", "x", "--parent", "7"], "no card 7"),
    ("bad timeout", _board, ["add", "x", "--timeout", "soon"], "not a duration"),
    ("bad profile name", _board, ["add", "x", "--profile", "../../etc/passwd"], "not valid"),
    ("not a board file", _not_a_board, ["ls"], "not a kanban board"),
    ("another app's sqlite", _other_sqlite, ["ls"], "not a kanban board"),
    ("newer board", _newer_board, ["ls"], "newer than this kanban"),
    ("fail without error", _board, ["fail", "1", "--error", " "], "give an error"),
]


@pytest.mark.parametrize(
    ("make", "args", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_refusal_is_one_clear_line_non_zero_and_changes_nothing(
    tmp_path: Path,
    make,
    args: list[str],
    expected: str,  # type: ignore[no-untyped-def]
) -> None:
    path = make(tmp_path)
    before = _digest(path)
    code, output = _run(["--db", str(path), *args], tmp_path)
    assert code != 0
    assert expected in output
    lines = output.strip().splitlines()
    assert len(lines) == 1 or lines[0].startswith(("Usage:", "kanban:")), output
    assert _digest(path) == before


def test_init_outside_git_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    code, output = _run(["init"], plain)
    assert code != 0
    assert "not inside a git repository" in output
    assert list(plain.iterdir()) == []


def test_no_board_found_says_how_to_make_one(tmp_path: Path) -> None:
    code, output = _run(["ls"], tmp_path)
    assert code != 0
    assert "kanban init" in output
