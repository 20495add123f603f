"""The operator's commands on a board a real dispatcher has worked: runs, logs, context,
status, gc and merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kanban
from kanban.testing import board_in, git, git_repo, kanban_process, use_board, wait_for_quiet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def worked(
    tmp_path_factory: pytest.TempPathFactory, module_postgres_url: str | None
) -> tuple[Path, dict[str, int]]:
    repo = git_repo(tmp_path_factory.mktemp("ops") / "repo")
    if module_postgres_url is not None:
        use_board(repo, module_postgres_url)  # every command run in repo uses it
    with board_in(repo) as b:
        ids = {
            "parent": b.add("Write the parser", profile="demo").id,
            "review": b.add("Review me", profile="demo", review=True).id,
            "left": b.add("Left edit", profile="demo", body="demo: touch README.md").id,
            "right": b.add("Right edit", profile="demo", body="demo: touch README.md").id,
        }
        ids["child"] = b.add("Test the parser", profile="demo", parents=[ids["parent"]]).id
        b.comment(ids["child"], "mind the semicolons")
    proc = kanban_process(repo, "dispatch", "--drain")
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    with board_in(repo) as b:
        wait_for_quiet(b.settings.db_url)  # supervisors finish their notes after the drain
    return repo, ids


def _board_id(repo: Path) -> str:
    from kanban import board

    with board_in(repo) as b:
        return str(b.tx.read(board.releases.board_id))


def _kanban(repo: Path, *args: str) -> tuple[int, str]:
    proc = kanban_process(repo, *args)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def test_runs_lists_every_attempt_with_its_log(worked: tuple[Path, dict[str, int]]) -> None:
    repo, ids = worked
    code, out = _kanban(repo, "runs", str(ids["parent"]), "--json")
    assert code == 0, out
    (run,) = json.loads(out)
    assert run["outcome"] == "done" and run["host"] and run["pid"]
    assert Path(run["log_path"]).exists()
    assert run["ended_at"].endswith("Z")


def test_logs_show_the_agent_output_and_the_supervisor_notes(
    worked: tuple[Path, dict[str, int]],
) -> None:
    repo, ids = worked
    code, out = _kanban(repo, "logs", str(ids["parent"]))
    assert code == 0
    assert f"demo agent finished card {ids['parent']}" in out
    assert "[kanban]" in out
    assert "the agent reported done" in out  # the demo agent reports with `complete` itself
    code, followed = _kanban(repo, "logs", str(ids["parent"]), "-f")  # a finished run: returns
    assert code == 0 and followed == out


def test_context_is_what_the_agent_sees(worked: tuple[Path, dict[str, int]]) -> None:
    repo, ids = worked
    code, out = _kanban(repo, "context", str(ids["child"]))
    assert code == 0
    assert f"# Card {ids['child']}: Test the parser" in out
    assert "Work this card builds on" in out and "Write the parser" in out
    assert "mind the semicolons" in out
    assert "kanban complete" in out


def test_status_reports_the_stopped_dispatcher_and_counts(
    worked: tuple[Path, dict[str, int]],
) -> None:
    repo, _ = worked
    code, out = _kanban(repo, "status", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["counts"]["done"] == 4 and data["counts"]["review"] == 1
    assert data["dispatcher_alive"] is False
    assert data["dispatchers"] and data["dispatchers"][0]["stopped_at"]


def test_gc_keeps_dirty_worktrees_and_removes_clean_finished_ones(
    worked: tuple[Path, dict[str, int]],
) -> None:
    repo, ids = worked
    review = repo / "worktrees" / f"{ids['review']}-review-me-{_board_id(repo)}"
    assert review.is_dir()  # a card in review keeps its worktree for the reviewer
    code, out = _kanban(repo, "gc", "--dry-run")
    assert code == 0 and "nothing to clean up" in out  # in review: not finished yet
    with board_in(repo) as b:
        b.complete(ids["review"])  # a person approves it
    (review / "notes.txt").write_text("unsaved")
    code, out = _kanban(repo, "gc")
    assert code == 0 and f"kept {review}" in out and "uncommitted changes" in out
    assert review.is_dir()
    (review / "notes.txt").unlink()
    code, out = _kanban(repo, "gc")
    assert code == 0 and f"removed {review}" in out
    assert not review.exists()
    assert git(repo, "branch", "--list", f"kanban/{review.name}")  # the branch stays


def test_merge_brings_branches_in_and_stops_cleanly_at_a_conflict(
    worked: tuple[Path, dict[str, int]],
) -> None:
    repo, ids = worked
    code, out = _kanban(repo, "merge", "--into", "main", "--json")
    assert code == 1
    report = json.loads(out)
    bid = _board_id(repo)
    assert report["conflict"] == f"kanban/{ids['right']}-right-edit-{bid}"
    assert report["conflict_files"] == ["README.md"]
    assert f"kanban/{ids['left']}-left-edit-{bid}" in report["merged"]
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    files = git(repo, "ls-tree", "-r", "--name-only", "main").splitlines()
    assert f"cards/{ids['parent']}-write-the-parser.md" in files


def test_why_for_a_done_card(worked: tuple[Path, dict[str, int]]) -> None:
    repo, ids = worked
    code, out = _kanban(repo, "why", str(ids["parent"]))
    assert code == 0 and "it is done" in out
    assert isinstance(kanban.CardStatus.DONE, str)
