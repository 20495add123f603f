"""CLI start-up: `--help` needs no database code, and a finished command exits without the
interpreter's teardown while keeping all of its output and its exit code.

Speed itself is measured, not asserted (docs/performance.md); these tests fail when the
behaviour that makes it fast breaks: SQLAlchemy imported for help, or output lost at exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kanban.testing import board_in

HELP_IMPORTS = """
import sys, click
from kanban.cli import cli, reference
for path, command in reference.walk(cli):
    reference.help_text(command, path)
print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic', 'git')))
"""


def test_help_for_every_command_imports_no_database_or_git_code() -> None:
    out = subprocess.run(
        [sys.executable, "-c", HELP_IMPORTS], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_a_fast_exit_keeps_every_byte_of_output_and_the_exit_code(repo: Path) -> None:
    with board_in(repo) as b:
        for n in range(300):
            b.add(f"card {n} " + "x" * 200)
    kanban = [sys.executable, "-m", "kanban"]
    listed = subprocess.run(
        [*kanban, "ls", "--json"], cwd=repo, capture_output=True, text=True, check=False
    )
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 300  # 80 KB through a pipe, all of it
    missing = subprocess.run(
        [*kanban, "show", "999"], cwd=repo, capture_output=True, text=True, check=False
    )
    assert missing.returncode == 3 and "no card 999" in missing.stderr
    usage = subprocess.run([*kanban, "nosuch"], cwd=repo, capture_output=True, text=True)
    assert usage.returncode == 2 and "No such command" in usage.stderr
