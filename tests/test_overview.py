"""`kanban board` (filters, finished columns, agreeing with `ls`, live with --watch in a real
terminal), `kanban why` with no card, and `kanban graph` (issue 15, item 9)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections import Counter

from tests.conftest import Cli


def _ls_counts(cli: Cli, *args: str) -> Counter[str]:
    return Counter(c["status"] for c in json.loads(cli.ok("ls", "--json", *args).stdout))


def _mixed_board(cli: Cli) -> None:
    for i in range(6):
        cli.ok("add", f"card {i}", "--profile", "demo" if i % 2 else "shell")
    cli.ok("complete", "1")
    cli.ok("complete", "2")
    cli.ok("complete", "3")
    cli.ok("block", "4", "--reason", "stuck")
    cli.ok("fail", "4", "--error", "gave up")
    cli.ok("cancel", "5")


def test_board_and_ls_agree_about_every_card(cli: Cli) -> None:
    _mixed_board(cli)
    board = json.loads(cli.ok("board", "--json").stdout)
    assert {k: v["total"] for k, v in board.items() if v["total"]} == dict(_ls_counts(cli))
    assert set(board) >= {"done", "failed", "cancelled"}  # finished cards are not hidden
    shell = json.loads(cli.ok("board", "--json", "--profile", "shell").stdout)
    assert {k: v["total"] for k, v in shell.items() if v["total"]} == dict(
        _ls_counts(cli, "--profile", "shell")
    )
    cli.ok("archive", "1")
    assert "archived" not in json.loads(cli.ok("board", "--json").stdout)
    assert json.loads(cli.ok("board", "--json", "--all").stdout)["archived"]["total"] == 1


def test_finished_columns_show_the_most_recent_and_count_all(cli: Cli) -> None:
    _mixed_board(cli)
    board = json.loads(cli.ok("board", "--json", "--finished", "1").stdout)
    assert board["done"]["total"] == 3
    assert [c["id"] for c in board["done"]["cards"]] == [3]
    text = cli.ok("board", "--finished", "1").stdout
    assert "done (3)" in text
    assert "2 more" in text


def test_board_watch_redraws_live_in_a_terminal(cli: Cli) -> None:
    cli.ok("add", "first card")
    primary, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "LINES": "50", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kanban", "--db", cli.db, "board", "--watch", "--every", "200ms"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        cwd=cli.cwd,
        env=env,
        close_fds=True,
        # A shell's background job inherits SIGINT ignored; a terminal's Ctrl-C is not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(secondary)
    seen = b""

    def read_until(text: bytes, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen:
            assert time.monotonic() < deadline, f"{text!r} never drawn: {seen[-2000:]!r}"
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(primary, 65536)
                except OSError:
                    break

    try:
        read_until(b"first card")
        cli.ok("add", "second card")
        read_until(b"second card")
        assert proc.poll() is None  # still watching
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            _drain(primary)  # keep reading: a full terminal buffer would block its last redraw
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(primary)


def _drain(fd: int) -> None:
    ready, _, _ = select.select([fd], [], [], 0.2)
    if ready:
        with contextlib.suppress(OSError):
            os.read(fd, 65536)


def test_board_watch_and_json_do_not_mix(cli: Cli) -> None:
    assert cli("board", "--watch", "--json").exit_code == 2


def test_why_with_no_card_explains_every_waiting_card(cli: Cli) -> None:
    cli.ok("add", "ready one", "--profile", "demo")  # 1: ready, no dispatcher
    cli.ok("add", "blocked one", "--profile", "demo")  # 2
    cli.ok("block", "2", "--reason", "which database?")
    cli.ok("add", "child of blocked", "--profile", "demo", "--parent", "2")  # 3
    cli.ok("add", "child of ready", "--profile", "demo", "--parent", "1")  # 4: moving along
    cli.ok("add", "done one")  # 5
    cli.ok("complete", "5")
    found = json.loads(cli.ok("why", "--json").stdout)
    assert [f["card"] for f in found] == [1, 2, 3]
    by_card = {f["card"]: f["reasons"] for f in found}
    assert any("no dispatcher" in r for r in by_card[1])
    assert any("which database?" in r for r in by_card[2])
    assert any("parent 2 needs a person" in r for r in by_card[3])
    text = cli.ok("why").stdout
    assert "card 3 (todo): child of blocked" in text
    assert "card 4" not in text
    assert "and 2 more (--limit 3)" in cli.ok("why", "--limit", "1").stdout


def test_why_with_nothing_waiting(cli: Cli) -> None:
    assert "no card is waiting" in cli.ok("why").stdout


def test_graph_prints_the_dependency_tree(cli: Cli) -> None:
    cli.ok("add", "root")  # 1
    cli.ok("add", "left", "--parent", "1")  # 2
    cli.ok("add", "right", "--parent", "1")  # 3
    cli.ok("add", "join", "--parent", "2", "--parent", "3")  # 4
    cli.ok("add", "alone")  # 5
    assert cli.ok("graph").stdout.splitlines() == [
        "1 [ready] root",
        "├── 2 [todo] left",
        "│   └── 4 [todo] join",
        "└── 3 [todo] right",
        "    └── 4 [todo] join (above)",
        "5 [ready] alone",
    ]
    only = json.loads(cli.ok("graph", "2", "--json").stdout)
    assert sorted(n["id"] for n in only["nodes"]) == [1, 2, 4]
    assert sorted(map(tuple, only["edges"])) == [(1, 2), (2, 4)]
    assert cli("graph", "99").exit_code == 3
