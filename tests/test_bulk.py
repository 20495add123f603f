"""Bulk verbs (ids and filters, all or nothing), `retry --now` and `retry --fresh`, and the
branch rebuilt on its own when it has no commits of its own (issue 15, items 3 and 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kanban.testing import board_in, git
from kanban.worktrees import Worktrees
from tests.conftest import Cli


def _statuses(cli: Cli) -> dict[int, str]:
    return {c["id"]: c["status"] for c in json.loads(cli.ok("ls", "--all", "--json").stdout)}


def test_several_ids_each_reported(cli: Cli) -> None:
    for title in ("a", "b", "c"):
        cli.ok("add", title, "--profile", "demo")
    out = cli.ok("cancel", "1", "3", "--reason", "superseded").stdout
    assert out.splitlines() == ["card 1 is cancelled", "card 3 is cancelled"]
    assert _statuses(cli) == {1: "cancelled", 2: "ready", 3: "cancelled"}
    moved = json.loads(cli.ok("retry", "1", "3", "--json").stdout)
    assert [(c["id"], c["status"]) for c in moved] == [(1, "ready"), (3, "ready")]


def test_one_refusal_changes_no_card_and_names_it(cli: Cli) -> None:
    for title in ("a", "b", "c"):
        cli.ok("add", title, "--profile", "demo")
    cli.ok("complete", "2")
    result = cli("cancel", "1", "2", "3")
    assert result.exit_code == 4
    assert "card 2 is done; it cannot become cancelled" in result.output
    assert "nothing was changed (all 3 cards or none)" in result.output
    assert _statuses(cli) == {1: "ready", 2: "done", 3: "ready"}
    missing = cli("archive", "2", "99")
    assert missing.exit_code == 3
    assert "no card 99" in missing.output
    assert _statuses(cli)[2] == "done"


def test_filters_choose_only_cards_the_verb_applies_to(cli: Cli) -> None:
    cli.ok("add", "done one", "--profile", "demo")
    cli.ok("add", "done two", "--profile", "shell")
    cli.ok("add", "open", "--profile", "demo")
    cli.ok("add", "blocked", "--profile", "demo")
    cli.ok("complete", "1")
    cli.ok("complete", "2")
    cli.ok("block", "4", "--reason", "which database?")
    assert cli.ok("archive", "--done", "--profile", "demo").stdout == "card 1 is archived\n"
    assert cli.ok("archive", "--done").stdout == "card 2 is archived\n"
    assert cli.ok("archive", "--done").stdout == "no card matches; nothing changed\n"
    assert cli.ok("unblock", "--profile", "demo").stdout.startswith("card 4 is ready")
    assert _statuses(cli) == {1: "archived", 2: "archived", 3: "ready", 4: "ready"}


def test_ids_and_filters_do_not_mix_and_one_is_needed(cli: Cli) -> None:
    cli.ok("add", "x")
    both = cli("cancel", "1", "--status", "ready")
    assert both.exit_code == 2
    assert "ids or filters" in both.output
    neither = cli("retry")
    assert neither.exit_code == 2
    assert "which cards?" in neither.output
    assert cli("archive", "--status", "nonsense").exit_code == 2
    assert _statuses(cli) == {1: "ready"}


def test_goal_filter(cli: Cli, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps({"cards": [{"key": "a", "title": "a", "profile": "demo"}, {"key": "b",
                   "title": "b", "profile": "demo", "after": ["a"]}]})
    )  # fmt: skip
    cli.ok("goal", "add", "ship", "--plan", str(plan))
    cli.ok("add", "outside", "--profile", "demo")
    goal_cards = [c["id"] for c in json.loads(cli.ok("ls", "--json").stdout) if c["goal_id"]]
    assert len(goal_cards) == 2
    out = cli.ok("cancel", "--goal", "1").stdout
    assert sorted(int(line.split()[1]) for line in out.splitlines()) == goal_cards
    assert [s for c, s in _statuses(cli).items() if c not in goal_cards] == ["ready"]


def test_retry_now_skips_a_backoff_and_keeps_the_attempt_spent(cli: Cli) -> None:
    cli.ok("add", "flaky", "--profile", "demo")
    token = json.loads(cli.ok("claim", "--card", "1", "--json").stdout)["token"]
    cli.ok("fail", "1", "--token", token, "--error", "network down")
    card = json.loads(cli.ok("show", "1", "--json").stdout)["card"]
    assert card["status"] == "ready" and card["not_before"] is not None
    plain = cli("retry", "1")
    assert plain.exit_code == 4
    assert "`kanban retry --now` skips the backoff" in plain.output
    cli.ok("retry", "1", "--now")
    detail = json.loads(cli.ok("show", "1", "--json").stdout)
    assert detail["card"]["not_before"] is None
    assert detail["card"]["attempts"] == 1
    assert detail["events"][-1]["kind"] == "backoff_skipped"
    assert json.loads(cli.ok("claim", "--json").stdout)["card_id"] == 1


@pytest.fixture
def rcli(repo: Path, repo_db: str) -> Cli:
    board_in(repo, db=repo_db).close()  # only `init` (or the library) creates a board
    return Cli(repo_db, repo)


def _trees(repo: Path) -> Worktrees:
    return Worktrees(repo, root=repo / "worktrees")


def test_retry_fresh_rebuilds_the_branch_from_the_current_base(rcli: Cli, repo: Path) -> None:
    rcli.ok("add", "needs config", "--profile", "demo")
    trees = _trees(repo)
    first = trees.prepare(1, "needs config", [])  # its first attempt
    (first.path / "attempt.txt").write_text("tried\n")
    trees.commit_all(first.path, "first attempt")
    rcli.ok("block", "1", "--reason", "config.toml missing")
    (repo / "config.toml").write_text("x = 1\n")
    git(repo, "add", "config.toml")
    git(repo, "commit", "-q", "-m", "the config the card needed")
    out = rcli.ok("retry", "1", "--fresh").stdout
    assert "card 1: its next attempt starts from the base branch" in out
    assert "old branch kept as kanban/stale/1-needs-config-" in out
    assert "card 1 is ready" in out
    again = trees.prepare(1, "needs config", [])
    assert not again.reused
    assert (again.path / "config.toml").exists()
    assert not (again.path / "attempt.txt").exists()
    stale = git(repo, "branch", "--list", "kanban/stale/*").strip().lstrip("* ")
    assert "attempt.txt" in git(repo, "ls-tree", "-r", "--name-only", stale)


def test_retry_fresh_refuses_a_dirty_worktree_and_changes_nothing(rcli: Cli, repo: Path) -> None:
    rcli.ok("add", "dirty", "--profile", "demo")
    first = _trees(repo).prepare(1, "dirty", [])
    (first.path / "wip.txt").write_text("unsaved\n")
    rcli.ok("block", "1", "--reason", "stopped")
    result = rcli("retry", "1", "--fresh")
    assert result.exit_code == 7
    assert "has uncommitted changes" in result.output
    assert (first.path / "wip.txt").exists()
    assert _statuses(rcli) == {1: "blocked"}


def test_a_branch_with_no_commits_of_its_own_follows_the_base(repo: Path) -> None:
    trees = _trees(repo)
    first = trees.prepare(1, "a", [])
    (repo / "fix.txt").write_text("fixed\n")
    git(repo, "add", "fix.txt")
    git(repo, "commit", "-q", "-m", "fix on main")
    again = trees.prepare(1, "a", [])
    assert not again.reused
    assert (again.path / "fix.txt").exists()
    # With commits of its own, the branch is the card's work: it is reused as it is.
    (again.path / "work.txt").write_text("w\n")
    trees.commit_all(again.path, "work")
    (repo / "more.txt").write_text("m\n")
    git(repo, "add", "more.txt")
    git(repo, "commit", "-q", "-m", "more on main")
    third = trees.prepare(1, "a", [])
    assert third.reused and (third.path / "work.txt").exists()
    assert first.path == third.path
