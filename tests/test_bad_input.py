"""The bad-input table over the whole CLI: each refusal is one clear line on stderr, a
non-zero exit, and no change to the board. Text that merely looks dangerous (SQL, shell,
odd unicode) is accepted and stored exactly as given, and harms nothing."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kanban
from kanban.cli import cli as kanban_cli
from kanban.testing import snapshot


def _run(args: list[str], cwd: Path, stdin: str | bytes | None = None) -> tuple[int, str]:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(kanban_cli, args, input=stdin, catch_exceptions=False)
    finally:
        os.chdir(old)
    return result.exit_code, result.output


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Path, kanban.Board]:
    """A board with a ready card 1, a running card 2 (with a live run), and a done card 3."""
    path = tmp_path / "board.db"
    board = kanban.open_board(str(path))
    board.add("ready one", profile="demo")
    running = board.add("running one", profile="demo")
    board.claim(card_id=running.id)
    done = board.add("done one")
    board.complete(done.id)
    return path, board


MB10 = "x" * (10 * 1024 * 1024)

# (id, args after --db, stdin, words the message must contain)
REFUSALS: list[tuple[str, list[str], str | None, str]] = [
    # card ids
    ("unknown card", ["show", "42"], None, "no card 42"),
    ("card id zero", ["show", "0"], None, "positive number"),
    ("negative card id", ["show", "-3"], None, "No such option"),
    ("card id text", ["show", "twelve"], None, "positive number"),
    ("card id huge", ["show", "9" * 30], None, "ids go up to 2147483647"),
    ("card id past 2**31", ["show", str(2**31)], None, "ids go up to 2147483647"),
    ("card id superscript", ["show", "\u00b2"], None, "positive number"),
    ("timeout without unit", ["add", "x", "--timeout", "5"], None, "'5' has no unit"),
    ("unknown card for why", ["why", "77"], None, "no card 77"),
    ("unknown card for context", ["context", "77"], None, "no card 77"),
    ("unknown card for logs", ["logs", "77"], None, "no card 77"),
    ("logs before any run", ["logs", "1"], None, "has no run"),
    # titles and bodies
    ("empty title", ["add", ""], None, "needs a title"),
    ("blank title", ["add", " \t "], None, "needs a title"),
    ("multi-line title", ["add", "one\ntwo"], None, "one line"),
    ("escape sequence title", ["add", "\x1b[2J\x1b[31mred"], None, "control character U+001B"),
    ("bell in title", ["add", "ding\x07"], None, "control character U+0007"),
    ("bidi override title", ["add", "invoice \u202etxt.exe"], None, "bidirectional override"),
    ("invalid utf-8 title", ["add", "caf\udce9"], None, "not valid UTF-8"),
    ("title too long", ["add", "t" * 501], None, "the limit is 500"),
    ("NUL in body from stdin", ["add", "x", "--body", "-"], "a\x00b", "NUL byte"),
    ("10 MB body", ["add", "x", "--body", "-"], MB10, "the limit is 1,000,000"),
    ("escape in body", ["add", "x", "--body", "\x1b]0;pwned\x07"], None, "control character"),
    ("empty comment", ["comment", "1", "  "], None, "empty comment"),
    ("NUL in comment", ["comment", "1", "-"], "\x00", "NUL byte"),
    # numbers
    ("huge priority", ["add", "x", "--priority", str(10**12)], None, "out of range"),
    ("priority not a number", ["add", "x", "--priority", "high"], None, "is not a valid integer"),
    ("zero max attempts", ["add", "x", "--max-attempts", "0"], None, "out of range"),
    ("negative max attempts", ["add", "x", "--max-attempts", "-1"], None, "out of range"),
    ("too many attempts", ["add", "x", "--max-attempts", "1000"], None, "out of range"),
    ("negative timeout", ["add", "x", "--timeout", "-5s"], None, "not a duration"),
    ("huge timeout", ["add", "x", "--timeout", "99999d"], None, "out of range"),
    ("timeout words", ["add", "x", "--timeout", "a while"], None, "not a duration"),
    ("zero ttl", ["claim", "--ttl", "0s"], None, "more than 0"),
    ("ttl without unit", ["claim", "--ttl", "30"], None, "'30' has no unit"),
    ("limit zero", ["ls", "--limit", "0"], None, "0<=x" if False else "is not in the range"),
    ("zero interval", ["dispatch", "--once", "--interval", "0s"], None, "at least 50ms"),
    ("interval without unit", ["dispatch", "--once", "--interval", "30"], None, "no unit"),
    ("max wait without unit", ["dispatch", "--drain", "--max-wait", "5"], None, "no unit"),
    ("zero workers", ["dispatch", "--once", "--max-workers", "0"], None, "is not in the range"),
    # references
    ("unknown parent", ["add", "x", "--parent", "7"], None, "no card 7"),
    ("self link", ["link", "1", "1"], None, "cycle 1 -> 1"),
    ("link to unknown", ["link", "1", "99"], None, "no card 99"),
    ("unlink missing edge", ["unlink", "1", "3"], None, "does not depend"),
    ("unknown state filter", ["ls", "--status", "finished"], None, "unknown status 'finished'"),
    ("path traversal in --path", ["add", "x", "--path", "../../etc"], None, "stay inside"),
    ("absolute --path", ["add", "x", "--path", "/etc/passwd"], None, "relative"),
    ("empty key", ["add", "x", "--key", "  "], None, "cannot be empty"),
    # profiles
    ("profile traversal", ["add", "x", "--profile", "../../bin/sh"], None, "not valid"),
    ("profile with slash", ["profiles", "show", "a/b"], None, "not valid"),
    ("unknown profile", ["profiles", "show", "nobody"], None, "unknown profile 'nobody'"),
    # moves
    ("archive a running card", ["archive", "2"], None, "cannot become archived"),
    ("retry a ready card", ["retry", "1"], None, "applies only to"),
    ("unblock a ready card", ["unblock", "1"], None, "applies only to blocked"),
    ("block without reason", ["block", "1", "--reason", ""], None, "give a reason"),
    ("block a done card", ["block", "3", "--reason", "x"], None, "cannot become blocked"),
    ("fail without error", ["fail", "1", "--error", " "], None, "give an error"),
    # leases
    ("wrong token", ["complete", "2", "--token", "not-the-token"], None, "lease lost"),
    ("heartbeat without token", ["heartbeat", "2"], None, "--token"),
    ("heartbeat a stranger's token", ["heartbeat", "1", "--token", "abc"], None, "lease lost"),
    # commands and options
    ("unknown command", ["frobnicate"], None, "No such command"),
    ("unknown option", ["ls", "--colour"], None, "No such option"),
]


@pytest.mark.parametrize(
    ("args", "stdin", "expected"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS]
)
def test_refused_clearly_non_zero_and_board_unchanged(
    seeded: tuple[Path, kanban.Board], args: list[str], stdin: str | None, expected: str
) -> None:
    path, board = seeded
    before = snapshot(board.engine)
    code, output = _run(["--db", str(path), *args], path.parent, stdin)
    assert code != 0, output
    assert expected in output, output
    assert "Traceback" not in output
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 or lines[0].startswith(("Usage:", "kanban:")), output
    assert snapshot(board.engine) == before


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "board.db"
    kanban.open_board(str(path)).close()
    (tmp_path / "config.toml").write_text(text)
    return path


FILE_REFUSALS: list[tuple[str, Callable[[Path], Path | str], list[str], str]] = [
    (
        "config is not TOML",
        lambda t: _config(t, "max_workers = [\n"),
        ["ls"],
        "does not parse as TOML",
    ),
    (
        "config unknown key",
        lambda t: _config(t, "maxworkers = 3\n"),
        ["ls"],
        "unknown setting(s) maxworkers",
    ),
    (
        "config bad duration",
        lambda t: _config(t, 'lease_ttl = "forever"\n'),
        ["ls"],
        "not a duration",
    ),
    (
        "heartbeat slower than lease",
        lambda t: _config(t, 'lease_ttl = "5s"\nheartbeat_interval = "10s"\n'),
        ["ls"],
        "must be shorter",
    ),
    ("db is a directory", lambda t: t, ["ls"], "is a directory"),
    (
        "db is a text file",
        lambda t: (t / "notes.txt", (t / "notes.txt").write_text("hi"))[0],
        ["ls"],
        "not a kanban board",
    ),
    (
        "unsupported URL",
        lambda t: "mysql://root@localhost/kanban",
        ["ls"],
        "unsupported database URL",
    ),
]


@pytest.mark.parametrize(
    ("make", "args", "expected"), [c[1:] for c in FILE_REFUSALS], ids=[c[0] for c in FILE_REFUSALS]
)
def test_bad_boards_and_configs_are_refused(
    tmp_path: Path, make, args: list[str], expected: str
) -> None:  # type: ignore[no-untyped-def]
    target = make(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, output = _run(["--db", str(target), *args], tmp_path)
    assert code != 0
    assert expected in output, output
    assert "Traceback" not in output
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before


def test_a_broken_profile_is_reported_by_profiles_check(tmp_path: Path, repo: Path) -> None:
    (repo / "profiles").mkdir()
    (repo / "profiles" / "bad.toml").write_text('command = "not a list"\n')
    code, output = _run(["--db", str(tmp_path / "b.db"), "profiles", "check", "bad"], repo)
    assert code == 1
    assert "command must be a non-empty list" in output


LOOKS_DANGEROUS = [
    "'; DROP TABLE cards; --",
    "Robert'); DELETE FROM runs WHERE ('1'='1",
    "$(rm -rf ~)",
    "`reboot`",
    "; shutdown -h now",
    "| cat /etc/shadow",
    "../../../../etc/passwd",
    "%s%s%s%n",
    "{prompt} {worktree} {0} {__class__}",
    "名前 — ñandú — Ελληνικά — العربية",
    "emoji 🎉👩‍👩‍👧‍👦 zwj",
    "e\u0301 combining",
    "\u200b zero width",
]


@pytest.mark.parametrize("title", LOOKS_DANGEROUS)
def test_dangerous_looking_titles_are_stored_verbatim(tmp_path: Path, title: str) -> None:
    path = tmp_path / "board.db"
    assert _run(["--db", str(path), "init"], tmp_path)[0] == 0  # only init creates a board
    code, output = _run(["--db", str(path), "add", title, "--json"], tmp_path)
    assert code == 0, output
    with kanban.open_board(str(path)) as board:
        (card,) = board.cards()
        assert card.title == title.strip()
        assert {t for t in snapshot(board.engine)} >= {"cards", "runs", "dependencies"}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(title=st.text(max_size=600))
def test_any_title_is_stored_verbatim_or_refused_without_change(tmp_path: Path, title: str) -> None:
    path = tmp_path / "prop.db"
    with kanban.open_board(str(path)) as board:
        before = snapshot(board.engine)
        refused: kanban.UsageError | None = None
        try:
            card = board.add(title)
        except kanban.UsageError as exc:
            refused = exc
        if refused is None:
            assert board.get(card.id).title == title.strip()
        else:
            assert refused.message and "\n" not in refused.message
            assert snapshot(board.engine) == before


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("heartbeat_interval", "0s", "heartbeat_interval = '0s' is out of range: give 50ms to"),
        ("tick_interval", "0", "tick_interval = '0' is out of range"),
        ("lease_ttl", "0.5s", "lease_ttl = '0.5s' is out of range: give 1.0s to 7d0h"),
        ("backoff_base", "0s", "backoff_base = '0s' is out of range"),
        ("db_patience", "0s", "db_patience = '0s' is out of range"),
        ("backoff_cap", "1s", "backoff_cap (1.0s) is shorter than backoff_base"),
    ],
)
def test_settings_out_of_range_are_refused_saying_the_range(
    tmp_path: Path, setting: str, value: str, says: str
) -> None:
    from kanban import settings

    state = tmp_path / ".kanban"
    state.mkdir()
    (state / "config.toml").write_text(f'{setting} = "{value}"\n')
    with pytest.raises(kanban.UsageError) as caught:
        settings.load(cwd=tmp_path)
    assert says in caught.value.message, caught.value.message
    # ... whichever way it is given
    with pytest.raises(kanban.UsageError):
        settings.load({setting: value}, cwd=tmp_path, env={})
