"""A board has an identity: card branches and worktrees carry it, so a re-created board or a
second board on the same repository never builds on another board's branch; a board deleted
or replaced under a running dispatcher stops it with a clear message; only `init` creates."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import kanban
from kanban import board as board_mod
from kanban.cli import cli as kanban_cli
from kanban.testing import board_in, drain, git, kanban_process, wait_for, write_profile

WRITER = """
description = "writes which board it worked for, leaves it uncommitted"
command = ["sh", "-c", "echo \\"$WHICH\\" > work.txt"]
workspace = "worktree"
env_allow = ["PATH", "WHICH"]
"""


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(kanban_cli, args, env=env, catch_exceptions=False)
    finally:
        os.chdir(old)
    return result.exit_code, result.output


@pytest.mark.slow
def test_a_recreated_board_never_builds_on_the_old_boards_branch(repo: Path) -> None:
    write_profile(repo, "writer", WRITER)
    branches = []
    for which in ("old board", "new board"):
        db = repo / ".kanban" / "board.db"
        if db.exists():  # the board is thrown away and made again; the repository stays
            shutil.rmtree(repo / ".kanban")
            shutil.rmtree(repo / "worktrees", ignore_errors=True)
            git(repo, "worktree", "prune")
        assert _run(["init"], repo)[0] == 0
        with board_in(repo) as b:
            card = b.add("same title", profile="writer")
            assert card.id == 1
        drain(repo, env={"WHICH": which})
        with board_in(repo) as b:
            done = b.get(1)
            assert done.status == "done", done
            assert done.branch is not None
            branches.append(done.branch)
    old, new = branches
    assert old != new, "both boards' card 1 used one branch"
    assert git(repo, "show", f"{new}:work.txt").strip() == "new board"
    # The new branch started from the base branch, not from the old board's work.
    ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", old, new], cwd=repo)
    assert ancestor.returncode == 1, f"{new} holds {old}'s commits"


def test_branch_names_carry_the_boards_id_and_old_branches_are_kept(
    board: kanban.Board, tmp_path: Path
) -> None:
    from kanban.worktrees import card_names

    bid = board.tx.read(board_mod.releases.board_id)
    assert len(bid) == 8 and bid.isalnum()
    path, branch = card_names(tmp_path, card_id=3, title="Fix it", board_id=bid)
    assert branch == f"kanban/3-fix-it-{bid}" and path == tmp_path / f"3-fix-it-{bid}"
    # Boards from before 0005 named them without an id; a card keeps the branch it has.
    assert card_names(tmp_path, card_id=3, title="Fix it", board_id=None)[1] == "kanban/3-fix-it"


def test_two_boards_have_different_ids(tmp_path: Path) -> None:
    with kanban.open_board(tmp_path / "a.db") as a, kanban.open_board(tmp_path / "b.db") as b:
        assert a.tx.read(board_mod.releases.board_id) != b.tx.read(board_mod.releases.board_id)


@pytest.mark.parametrize("how", ["--db", "KANBAN_DB"])
def test_a_mistyped_board_path_says_where_it_looked_and_creates_nothing(
    tmp_path: Path, how: str
) -> None:
    typo = tmp_path / "bord.db"
    args, env = (["--db", str(typo)], None) if how == "--db" else ([], {"KANBAN_DB": str(typo)})
    code, out = _run([*args, "ls"], tmp_path, env=env)
    assert code != 0
    assert f"no board at {typo}" in out and f"kanban --db {typo} init" in out, out
    assert not typo.exists()
    assert _run([*args, "init"], tmp_path, env=env)[0] == 0
    assert _run([*args, "ls"], tmp_path, env=env)[0] == 0


def test_an_empty_postgres_schema_is_not_made_a_board_by_a_command(
    postgres_url: str | None, tmp_path: Path
) -> None:
    if postgres_url is None:
        pytest.skip("PostgreSQL only")
    code, out = _run(["--db", postgres_url, "ls"], tmp_path)
    assert code != 0 and "no board at" in out and "init" in out, out
    assert _run(["--db", postgres_url, "init"], tmp_path)[0] == 0
    assert _run(["--db", postgres_url, "ls"], tmp_path)[0] == 0


@pytest.mark.slow
@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_board_deleted_or_replaced_under_a_dispatcher_stops_it(repo: Path, how: str) -> None:
    assert _run(["init"], repo)[0] == 0
    db = repo / ".kanban" / "board.db"
    with board_in(repo) as b:
        b.add("a card with no profile runs nowhere")
    proc = kanban_process(repo, "dispatch", "--interval", "0.2s")
    try:
        try:
            wait_for(lambda: _dispatcher_ticked(repo), timeout=10, what="a first tick")
        except TimeoutError:
            proc.kill()
            raise AssertionError(proc.communicate()[0]) from None
        if how == "replaced":  # another board moved over it in one step
            with kanban.open_board(repo / "other.db"):
                pass
            os.replace(repo / "other.db", db)
        else:
            db.unlink()
        for suffix in ("-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0, out
    assert f"the board {db}" in out and ("was deleted" if how == "deleted" else "replaced") in out
    if how == "deleted":
        assert not db.exists(), "the dispatcher made a new board where the old one was"


def _dispatcher_ticked(repo: Path) -> bool:
    with board_in(repo) as b:
        return bool(b.tx.read(board_mod.list_dispatchers))
