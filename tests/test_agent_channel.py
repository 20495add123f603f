"""The agent's channel (kanban.channel): a real socket served as a supervisor serves it, a real
board, and real `kanban` processes inside the "run" (KANBAN_SOCKET set) as clients."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kanban import agentverbs, api, channel, errors, supervisor
from kanban.testing import board_in


@dataclasses.dataclass
class Run:
    board: api.Board
    card: int
    other: int
    token: str
    server: channel.Server
    notes: list[str]

    def kanban(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KANBAN_SOCKET": str(self.server.path),
            "KANBAN_CARD_ID": str(self.card),
        }
        env.pop("KANBAN_DB", None)
        return subprocess.run(
            [sys.executable, "-m", "kanban", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    def req(self, verb: str, card: int | None = None, **args: Any) -> Any:
        """A request from this process (the server lets its own process in, as a supervisor
        would itself): the protocol without a Python start-up per call."""
        return channel.request(verb, card=card, path=str(self.server.path), **args)

    def raw(self, data: bytes) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.server.path))
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            answer: dict[str, Any] = json.loads(sock.makefile("rb").readline())
            return answer


@pytest.fixture
def run(repo: Path, tmp_path: Path) -> Iterator[Run]:
    with board_in(repo) as b:
        card = b.add("the run's card", profile="demo")
        other = b.add("someone else's card", profile="demo")
        won = b.claim(card_id=card.id)
        assert won is not None
        notes: list[str] = []
        verbs = agentverbs.RunVerbs(b, card.id, won.run_id, won.token, note=notes.append)
        sock_dir = tmp_path / "run"
        sock_dir.mkdir(mode=0o700)
        server = channel.Server(
            sock_dir / channel.SOCKET_NAME,
            card_id=card.id,
            handle=verbs,
            note=notes.append,
            is_agent=supervisor._is_descendant,
        )
        verbs.on_end = lambda outcome: setattr(server, "ended", outcome)
        server.start()
        try:
            yield Run(b, card.id, other.id, won.token, server, notes)
        finally:
            server.close()


def test_the_socket_is_owner_only(run: Run) -> None:
    mode = stat.S_IMODE(os.stat(run.server.path).st_mode)
    assert mode == 0o600


def test_an_agent_completes_its_own_card_with_a_summary_and_metadata(run: Run) -> None:
    done = run.kanban("complete", "--summary", "wrote it", "--metadata", '{"tests": 12}')
    assert done.returncode == 0, done.stderr
    assert f"card {run.card} is done" in done.stdout
    detail = run.board.show(run.card)
    assert detail.card.status == "done" and detail.card.summary == "wrote it"
    meta = [e for e in detail.events if e.kind == "agent_metadata"]
    assert meta and meta[0].data == {"metadata": {"tests": 12}}


def test_another_card_is_refused_and_nothing_changes(run: Run) -> None:
    before = run.board.show(run.other)
    out = run.kanban("complete", str(run.other), "--summary", "not mine")
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert f"card {run.other} is not this run's card" in out.stderr
    for verb, args in (
        ("block", {"reason": "x"}),
        ("fail", {"error": "x"}),
        ("comment", {"body": "hello"}),
        ("heartbeat", {}),
        ("show", {}),
    ):
        with pytest.raises(channel.Refused, match="not this run's card"):
            run.req(verb, card=run.other, **args)
    after = run.board.show(run.other)
    assert after.card == before.card and after.comments == before.comments
    assert any("not this run's card" in n for n in run.notes), "refusals are logged"


def test_any_other_command_is_refused_inside_a_run(run: Run) -> None:
    out = run.kanban("ls")
    assert out.returncode == 2 and "`kanban ls` is not available inside a run" in out.stderr
    with pytest.raises(channel.Refused, match="not available inside a run"):
        run.req("retry")


def test_a_person_without_kanban_socket_has_the_whole_cli(run: Run, repo: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KANBAN_SOCKET"}
    out = subprocess.run(
        [sys.executable, "-m", "kanban", "ls"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "someone else's card" in out.stdout


def test_block_kinds(run: Run) -> None:
    with pytest.raises(channel.Refused, match="unknown kind 'whim'"):
        run.req("block", reason="why", kind="whim")
    assert run.board.get(run.card).status == "running"
    out = run.kanban("block", "--reason", "waits for the schema card", "--kind", "dependency")
    assert out.returncode == 0, out.stderr
    card = run.board.get(run.card)
    assert card.status == "blocked" and card.reason == "dependency: waits for the schema card"


def test_a_transient_block_is_a_retried_attempt(run: Run) -> None:
    run.req("block", reason="registry down", kind="transient")
    card = run.board.get(run.card)
    assert card.status == "ready" and "transient: registry down" in (card.reason or "")


def test_show_comment_add_and_heartbeat_on_the_own_card(run: Run) -> None:
    run.req("comment", body="a note for later")
    child = run.req("add", title="follow-up work", body="details")
    assert child["parents"] == [run.card] and child["profile"] == "demo"
    with pytest.raises(channel.Refused, match="own card"):
        run.req("add", title="elsewhere", parents=[run.other])
    beat = run.req("heartbeat", note="running the tests")
    assert beat["lease_expires_at"] and beat["note"] == "running the tests"
    shown = run.req("show")
    assert shown["card"]["id"] == run.card
    assert [c["body"] for c in shown["comments"]] == ["a note for later"]
    assert any(e["kind"] == "agent_note" for e in shown["events"])
    assert any("running the tests" in n for n in run.notes), "the note is in the run's log"


def test_a_run_adds_a_bounded_number_of_cards(run: Run) -> None:
    for i in range(channel.MAX_CHILDREN):
        run.req("add", title=f"child {i}")
    with pytest.raises(channel.Refused, match=f"already added {channel.MAX_CHILDREN}"):
        run.req("add", title="one too many")
    assert len(run.board.cards(parent=run.card)) == channel.MAX_CHILDREN


def test_a_finished_run_refuses_every_write(run: Run) -> None:
    run.req("complete", summary="done")
    for verb, args in (
        ("comment", {"body": "late"}),
        ("fail", {"error": "late"}),
        ("add", {"title": "late"}),
    ):
        with pytest.raises(errors.LeaseLost, match="this run has ended"):
            run.req(verb, **args)
    assert run.board.get(run.card).status == "done"
    assert run.board.cards(parent=run.card) == []


def test_the_lease_token_is_useless_once_the_run_ended(run: Run) -> None:
    """Even the supervisor's own token: the run is over, so the board refuses the write."""
    run.board.complete(run.card, token=run.token, summary="first")
    with pytest.raises(errors.LeaseLost, match="lease lost"):
        run.req("comment", body="after the end")
    assert run.board.show(run.card).comments == ()


def test_bad_input_is_refused_logged_and_the_server_goes_on(run: Run) -> None:
    assert not run.raw(b"not json\n")["ok"]
    assert "malformed" in run.raw(b"[1, 2]\n")["error"]
    huge = run.raw(b'{"verb": "comment", "args": {"body": "' + b"x" * (channel.MAX_REQUEST + 10))
    assert not huge["ok"] and "KiB" in huge["error"]
    assert "not available" in run.raw(b'{"verb": "ls"}\n')["error"]
    assert "bad arguments" in run.raw(b'{"verb": "comment", "args": {"nope": 1}}\n')["error"]
    long_text = json.dumps({"verb": "comment", "args": {"body": "y" * (channel.MAX_TEXT + 1)}})
    assert "characters" in run.raw(long_text.encode() + b"\n")["error"]
    assert len([n for n in run.notes if "refused" in n]) >= 6
    run.req("comment", body="still here")
    assert [c.body for c in run.board.show(run.card).comments] == ["still here"]


def test_a_process_that_is_not_the_agents_is_refused(run: Run, tmp_path: Path) -> None:
    """A double-forked orphan belongs to no one below us: like another run's agent."""
    answer = tmp_path / "answer.json"
    script = (
        "import os, sys, json, time\n"
        "parent = os.getpid()\n"
        "if os.fork(): os._exit(0)\n"
        "while os.getppid() == parent: time.sleep(0.01)\n"
        "os.setsid()\n"
        "from kanban import channel\n"
        "try:\n"
        "    channel.request('comment', path=sys.argv[1], body='from outside')\n"
        "    out = 'accepted'\n"
        "except Exception as exc:\n"
        "    out = str(exc)\n"
        "open(sys.argv[2], 'w').write(json.dumps(out))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(run.server.path), str(answer)], check=True)
    from kanban.testing import wait_for

    wait_for(answer.exists, timeout=60, what="the orphan's answer")
    assert "not this run's agent" in json.loads(answer.read_text())
    assert run.board.show(run.card).comments == ()


def test_the_board_keeps_a_digest_of_the_token_and_the_digest_opens_nothing(run: Run) -> None:
    import sqlalchemy as sa

    from kanban.models import runs

    with run.board.engine.connect() as conn:
        stored = conn.execute(sa.select(runs.c.token).where(runs.c.card_id == run.card)).scalar()
    assert stored is not None and stored != run.token and run.token not in stored
    with pytest.raises(errors.LeaseLost):
        run.board.complete(run.card, token=stored, summary="with what the board file holds")
    assert run.board.get(run.card).status == "running"
    run.board.heartbeat(run.card, token=run.token)  # the real token still holds the lease
