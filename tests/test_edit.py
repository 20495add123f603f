"""`kanban edit`, `kanban unarchive`, and profiles checked at `add` and `edit` (issue 15,
items 1 and 2). Through the CLI (click's runner) on both backends; the dispatcher test runs
real supervisors (in threads) and real agent processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import kanban
from kanban import clock, dispatcher
from kanban.testing import ThreadSpawner, board_in, wait_for, write_profile
from tests.conftest import Cli


@pytest.fixture
def rcli(repo: Path, repo_db: str) -> Cli:
    """`kanban` run inside a git repository whose profiles/ the test may write."""
    board_in(repo, db=repo_db).close()  # only `init` (or the library) creates a board
    return Cli(repo_db, repo)


def _card(cli: Cli, card: int) -> dict:  # type: ignore[type-arg]
    return json.loads(cli.ok("show", str(card), "--json").stdout)  # type: ignore[no-any-return]


def test_edit_changes_each_field_and_records_what_changed(cli: Cli) -> None:
    cli.ok("add", "Wirte the parser", "--profile", "demo")
    out = cli.ok(
        "edit", "1", "--title", "Write the parser", "--body", "CSV, with quotes",
        "--priority", "5", "--profile", "shell", "--path", "src/csv/**", "--path", "tests/**",
        "--max-attempts", "7", "--timeout", "30m", "--max-cost", "2.5", "--review",
    ).stdout  # fmt: skip
    assert "title 'Wirte the parser' -> 'Write the parser'" in out
    detail = _card(cli, 1)
    card = detail["card"]
    assert (card["title"], card["body"], card["priority"], card["profile"]) == (
        "Write the parser", "CSV, with quotes", 5, "shell",
    )  # fmt: skip
    assert card["paths"] == ["src/csv/**", "tests/**"]
    assert (card["max_attempts"], card["timeout"], card["max_cost_usd"]) == (7, 1800.0, 2.5)
    assert card["review"] is True
    (edited,) = [e for e in detail["events"] if e["kind"] == "edited"]
    assert edited["data"]["changed"]["priority"] == {"from": 0, "to": 5}
    assert edited["data"]["changed"]["profile"] == {"from": "demo", "to": "shell"}
    # The same values again change nothing and record nothing.
    assert "unchanged" in cli.ok("edit", "1", "--priority", "5").stdout
    assert [e["kind"] for e in _card(cli, 1)["events"]].count("edited") == 1
    cli.ok("edit", "1", "--no-review", "--no-paths")
    card = _card(cli, 1)["card"]
    assert card["review"] is False
    assert card["paths"] == []


def test_edit_refuses_bad_values_and_changes_nothing(cli: Cli) -> None:
    cli.ok("add", "x", "--profile", "demo")
    before = _card(cli, 1)["card"]
    for args, expected in [
        (["--title", "  "], "a card needs a title"),
        (["--priority", "9999999999"], "out of range"),
        (["--timeout", "5"], "'5' has no unit: write 5s, 5m or 5h"),
        (["--path", "/etc/passwd"], "must be relative"),
        ([], "nothing to change"),
    ]:
        result = cli("edit", "1", *args)
        assert result.exit_code != 0, args
        assert expected in result.output, result.output
    assert cli("edit", "99", "--priority", "1").exit_code == 3
    assert _card(cli, 1)["card"] == before


def test_a_running_card_refuses_what_its_agent_was_given(cli: Cli) -> None:
    cli.ok("add", "x", "--profile", "demo")
    cli.ok("claim", "--card", "1")
    result = cli("edit", "1", "--title", "y", "--body", "z")
    assert result.exit_code == 4
    assert "card 1 is running: --title, --body would change what its agent" in result.output
    assert "--priority, --max-attempts (from the next attempt), --max-cost" in result.output
    assert _card(cli, 1)["card"]["title"] == "x"
    cli.ok("edit", "1", "--priority", "3", "--max-attempts", "5", "--review")
    card = _card(cli, 1)["card"]
    assert (card["priority"], card["max_attempts"], card["review"]) == (3, 5, True)


def test_unarchive_brings_a_card_back_to_where_it_was(cli: Cli) -> None:
    cli.ok("add", "finished")
    cli.ok("add", "waiting")
    cli.ok("complete", "1")
    cli.ok("archive", "1", "2")
    assert "card 1 is archived" in cli("complete", "1").output.replace("kanban: ", "")
    assert "`kanban unarchive 1` brings it back first" in cli("edit", "1", "--priority", "2").output
    out = cli.ok("unarchive", "1", "2").stdout
    assert "card 1 is done again" in out
    assert "card 2 is ready again" in out
    assert [e["kind"] for e in _card(cli, 1)["events"]][-1] == "unarchived"
    refused = cli("unarchive", "1")
    assert refused.exit_code == 4
    assert "card 1 is done; `unarchive` applies only to archived cards" in refused.output


def test_add_and_edit_refuse_an_unknown_profile_with_the_known_list(cli: Cli) -> None:
    result = cli("add", "x", "--profile", "shel")
    assert result.exit_code == 6
    assert "unknown profile 'shel'; known profiles:" in result.output
    assert "shell" in result.output
    assert json.loads(cli.ok("ls", "--json").stdout) == []
    cli.ok("add", "x", "--profile", "demo")
    result = cli("edit", "1", "--profile", "shel")
    assert result.exit_code == 6
    assert "unknown profile 'shel'" in result.output
    assert _card(cli, 1)["card"]["profile"] == "demo"


def test_a_card_without_a_profile_says_how_to_give_it_one(cli: Cli) -> None:
    result = cli.ok("add", "no agent")
    assert "`kanban edit 1 --profile NAME` gives it one" in result.output
    cli.ok("edit", "1", "--profile", "demo")
    assert _card(cli, 1)["card"]["profile"] == "demo"


def test_a_broken_profile_is_refused_and_reported_everywhere(rcli: Cli, repo: Path) -> None:
    write_profile(repo, "broken", "command = [\n")
    result = rcli("add", "x", "--profile", "broken")
    assert result.exit_code == 6
    assert "profile 'broken' does not load" in result.output
    assert "kanban profiles check broken" in result.output
    rcli.ok("add", "x", "--profile", "demo")
    assert rcli("edit", "1", "--profile", "broken").exit_code == 6
    # A card that got it before the file broke waits, saying why; status and check say so.
    write_profile(repo, "later", 'command = ["true"]\n')
    rcli.ok("edit", "1", "--profile", "later")
    write_profile(repo, "later", "command = \n")
    assert "its profile 'later' does not load" in rcli.ok("why", "1").stdout
    status = rcli.ok("status").stdout
    assert "profile later does not load" in status
    assert "profile broken does not load" in status
    assert json.loads(rcli.ok("status", "--json").stdout)["broken_profiles"].keys() == {
        "broken",
        "later",
    }
    check = rcli("profiles", "check")
    assert check.exit_code == 1
    assert "broken:" in check.output
    assert "demo: ok" in check.output


def test_a_dispatcher_with_one_broken_profile_still_runs_the_others(
    repo: Path, repo_db: str
) -> None:
    write_profile(repo, "broken", "command = [\n")
    unreadable = write_profile(repo, "dangling", "")
    unreadable.unlink()
    unreadable.symlink_to(repo / "no-such-file.toml")  # unreadable even as root
    with board_in(repo, db=repo_db) as b:
        stuck = b.add("never runs", profile="broken")
        good = b.add("runs", profile="demo")
        d = dispatcher.Dispatcher(b, spawner=ThreadSpawner(b))

        def finished() -> bool:
            d.tick()
            return b.get(good.id).status == "done"

        wait_for(finished, timeout=60, interval=0.1, what="the demo card")
        for child in d.children.values():
            child.wait(timeout=60)  # the supervisor's thread ends its run's clean-up
        assert b.get(stuck.id).status == "ready"
        assert b.runs(stuck.id) == []
        from kanban import why

        assert any("does not load" in r for r in why.explain(b, stuck.id))
        from kanban import profiles

        _good, bad = profiles.load_all(repo=repo)
        assert "cannot be read" in bad["dangling"]


def test_goal_add_and_add_share_the_profile_check(rcli: Cli, repo: Path) -> None:
    write_profile(repo, "broken", "command = [\n")
    result = rcli("goal", "add", "ship it", "--planner", "broken")
    assert result.exit_code == 6
    assert "profile 'broken' does not load" in result.output


def test_edit_is_a_board_verb_in_one_transaction(board: kanban.Board) -> None:
    from kanban import board as verbs
    from kanban import db

    card = board.add("x")
    with pytest.raises(RuntimeError), db.transaction(board.engine) as conn:  # noqa: PT012
        verbs.edits.edit_card(conn, card_id=card.id, changes={"priority": 4}, now=clock.now())
        raise RuntimeError("roll back")
    assert board.get(card.id).priority == 0
