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


def test_the_lazy_command_table_names_every_command_of_every_cli_module() -> None:
    """`kanban.cli.COMMANDS` (what the top-level group imports on demand) is exactly what
    the command modules define: a new command cannot be left out of the CLI."""
    import importlib

    from kanban import cli as cli_package

    modules = {module for module, _ in cli_package.COMMANDS.values()}
    defined: set[int] = set()
    for module in modules:
        loaded = importlib.import_module(f"kanban.cli.{module}")
        defined |= {id(c) for c in getattr(loaded, "COMMANDS", [])}
        defined |= {id(v) for k, v in vars(loaded).items() if k.endswith("_group")}
    listed = {
        id(getattr(importlib.import_module(f"kanban.cli.{m}"), a))
        for m, a in cli_package.COMMANDS.values()
    }
    assert listed == defined
    import click

    top = cli_package.cli
    assert top.list_commands(click.Context(top)) == list(cli_package.COMMANDS)


LOADED_BY = """
import json, sys
from kanban.cli import cli
cli.main(sys.argv[1:], standalone_mode=False)
print(json.dumps(sorted(sys.modules)))
"""


def test_status_show_add_and_complete_load_no_process_scheduler_or_git_code(repo: Path) -> None:
    """What these four commands import (measured against Hermes' in docs/performance.md):
    never psutil, APScheduler, GitPython or Alembic, nor other commands' modules, nor goals
    and schedules (the board makes those on first use)."""
    with board_in(repo) as b:
        b.add("shown")
        b.add("completed")
    for argv in (["status"], ["show", "1"], ["add", "another"], ["complete", "2"]):
        out = subprocess.run(
            [sys.executable, "-c", LOADED_BY, *argv],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        )
        loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
        unwanted = {"psutil", "apscheduler", "git", "alembic", "kanban.cli.dispatch"}
        assert not unwanted & {m.split(".")[0] for m in loaded} - {"kanban"}, argv
        others = {"kanban.cli.dispatch", "kanban.cli.goals", "kanban.goals", "kanban.schedules"}
        assert not others & loaded, argv


def test_process_identity_from_proc_agrees_with_psutil() -> None:
    import os

    import psutil

    from kanban import processes

    for pid in (os.getpid(), os.getppid(), 1):
        found = processes._proc_stat(pid)
        assert found is not None and found[1] is False
        assert abs(found[0] - psutil.Process(pid).create_time()) < 0.01
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = processes.Identity.of(child.pid)
    child.wait()
    assert processes.state(identity) == "gone"
    assert processes.state(processes.Identity(os.getpid(), 1.0)) == "replaced"
