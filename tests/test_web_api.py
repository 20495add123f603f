"""The JSON API, in-process through Starlette's ASGI client, on both backends: the shapes of
the CLI's --json, every action through the board's verbs, and bad input that changes nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

import kanban
from kanban import board as verbs
from kanban import clock, processes, web
from kanban.testing import snapshot
from kanban.web import app as webapp


@pytest.fixture
def client(board: kanban.Board) -> Iterator[TestClient]:
    with TestClient(web.create_app(board), base_url="https://127.0.0.1") as c:
        yield c


def test_cards_have_the_cli_json_shapes(client: TestClient, board: kanban.Board, cli: Any) -> None:
    a = board.add("parse the config", profile="demo", priority=2)
    board.add("use it", parents=[a.id])
    board.comment(a.id, "note for the agent")
    assert client.get("/api/cards").json() == json.loads(cli.ok("ls", "--json").output)
    assert client.get(f"/api/cards/{a.id}").json() == json.loads(
        cli.ok("show", str(a.id), "--json").output
    )
    assert client.get(f"/api/cards/{a.id}/runs").json() == []
    status = client.get("/api/status").json()
    assert set(status) == set(json.loads(cli.ok("status", "--json").output))
    assert status["counts"]["ready"] == 1 and status["counts"]["todo"] == 1


def test_agent_text_is_kept_as_it_is_and_escaped_in_the_api(
    client: TestClient, board: kanban.Board
) -> None:
    """The API's JSON carries an agent's text exactly (what --json does); no raw control
    character is in the body, so a person reading it with curl sees no escape sequence."""
    text = "\x1b]0;owned\x07\x1b[2Jcleared \x9b31m C1"
    card = board.add("agent card", profile="demo")
    claimed = board.claim(worker="w")
    assert claimed is not None and claimed.card.id == card.id
    board.block(card.id, reason=text, token=claimed.token)
    body = client.get(f"/api/cards/{card.id}")
    assert not any(ch in body.text for ch in "\x1b\x07\x9b"), body.text
    assert "\\u001b]0;owned\\u0007" in body.text and "\\u009b31m" in body.text
    assert body.json()["card"]["reason"] == text
    runs = client.get(f"/api/cards/{card.id}/runs").json()
    assert runs[-1]["error"] == text
    listed = client.get("/api/cards")  # the list is encoded by orjson: escaped the same
    assert not any(ch in listed.text for ch in "\x1b\x07\x9b"), listed.text
    assert [c["reason"] for c in listed.json()] == [text]


def test_status_is_the_cli_status_report(client: TestClient, board: kanban.Board, cli: Any) -> None:
    """One library function (`health.report`) answers both: equal but for the clock."""
    board.add("waits", profile="demo")
    board.add("runs", profile="demo")
    board.claim(worker="test")
    me = processes.Identity.of(os.getpid())
    board.tx.write(
        lambda c: verbs.dispatchers.beat(
            c,
            name="vm:1",
            host=board.settings.host_id,
            pid=me.pid,
            started_at=dt.datetime.fromtimestamp(me.started, dt.UTC),
            now=clock.now(),
            interval=60.0,
            version="test",
        )
    )
    web_status = client.get("/api/status").json()
    cli_status = json.loads(cli.ok("status", "--json").output)
    assert web_status.pop("now") and cli_status.pop("now")
    assert web_status == cli_status
    assert web_status["dispatcher_alive"] is True and len(web_status["running"]) == 1


def test_list_filters_as_the_cli_does(client: TestClient, board: kanban.Board) -> None:
    a = board.add("alpha", profile="demo")
    board.add("beta", profile="shell")
    board.add("gamma", parents=[a.id])
    titles = lambda r: [c["title"] for c in r.json()]  # noqa: E731
    assert titles(client.get("/api/cards?status=todo")) == ["gamma"]
    assert titles(client.get("/api/cards?profile=shell")) == ["beta"]
    assert titles(client.get("/api/cards?search=ALP")) == ["alpha"]
    assert titles(client.get(f"/api/cards?parent={a.id}")) == ["gamma"]
    assert titles(client.get("/api/cards?limit=1")) == ["alpha"]
    refused = client.get("/api/cards?colour=red")
    assert (
        refused.status_code == 400 and "unknown query parameter 'colour'" in refused.json()["error"]
    )


def test_add_through_the_api_is_the_cli_add(client: TestClient, board: kanban.Board) -> None:
    parent = board.add("first")
    made = client.post(
        "/api/cards",
        json={
            "title": "second",
            "profile": "demo",
            "parents": [parent.id],
            "priority": 3,
            "paths": ["src/*.py"],
            "review": True,
            "timeout": "30m",
            "max_cost_usd": 2.5,
        },
    )
    assert made.status_code == 201
    card = board.get(made.json()["id"])
    assert (card.title, card.status, card.parents, card.priority) == (
        "second",
        "todo",
        (parent.id,),
        3,
    )
    assert card.paths == ("src/*.py",) and card.review and card.timeout == 1800
    assert card.max_cost_usd == 2.5
    again = client.post("/api/cards", json={"title": "k", "key": "same"}).json()
    assert client.post("/api/cards", json={"title": "k", "key": "same"}).json()["id"] == again["id"]


def test_every_action_goes_through_the_board_verbs(client: TestClient, board: kanban.Board) -> None:
    a, b = board.add("a"), board.add("b")
    post = lambda path, body=None: client.post(path, json=body or {})  # noqa: E731
    assert post(f"/api/cards/{b.id}/link", {"parent": a.id}).json()["parents"] == [a.id]
    assert board.get(b.id).status == "todo"
    assert post(f"/api/cards/{b.id}/unlink", {"parent": a.id}).json()["parents"] == []
    assert post(f"/api/cards/{a.id}/link", {"child": b.id}).status_code == 200
    comment = post(f"/api/cards/{a.id}/comment", {"body": "look at x"}).json()
    assert comment["body"] == "look at x" and comment["card_id"] == a.id
    board.block(a.id, reason="which database?")
    unblocked = post(f"/api/cards/{a.id}/unblock", {"note": "use PostgreSQL"}).json()
    assert unblocked["status"] == "ready"
    assert [m.body for m in board.show(a.id).comments] == ["look at x", "use PostgreSQL"]
    assert post(f"/api/cards/{a.id}/cancel", {"reason": "not now"}).json()["status"] == "cancelled"
    assert post(f"/api/cards/{a.id}/retry", {"note": "now"}).json()["status"] == "ready"
    board.complete(a.id)
    assert post(f"/api/cards/{a.id}/archive").json()["status"] == "archived"


def test_review_cards_are_approved_or_sent_back(client: TestClient, board: kanban.Board) -> None:
    card = board.add("needs eyes", review=True)
    won = board.claim(card_id=card.id)
    assert won is not None
    board.complete(card.id, token=won.token, summary="did it")
    assert board.get(card.id).status == "review"
    back = client.post(f"/api/cards/{card.id}/send-back", json={"note": "add tests"})
    assert back.json()["status"] == "ready"
    assert board.show(card.id).comments[-1].body == "add tests"
    won = board.claim(card_id=card.id)
    assert won is not None
    board.complete(card.id, token=won.token)
    assert client.post(f"/api/cards/{card.id}/approve", json={}).json()["status"] == "done"
    again = client.post(f"/api/cards/{card.id}/approve", json={})
    assert again.status_code == 409
    assert (
        again.json()["error"] == f"card {card.id} is done; `approve` applies only to review cards"
    )


def test_a_goal_plan_is_approved_from_the_api(client: TestClient, board: kanban.Board) -> None:
    from kanban import plans

    plan = plans.check_plan(
        {"cards": [{"key": "a", "title": "step one", "profile": "demo"}]}, known_profiles=["demo"]
    )
    goal = board.goals.add("ship it", plan=plan)
    assert client.get(f"/api/goals/{goal.id}").json()["goal"]["status"] == "proposed"
    assert [g["id"] for g in client.get("/api/goals").json()] == [goal.id]
    approved = client.post(f"/api/goals/{goal.id}/approve", json={})
    assert approved.status_code == 200
    assert board.goals.show(goal.id).goal.status == "working"
    again = client.post(f"/api/goals/{goal.id}/approve", json={})
    assert again.status_code == 409 and "goal" in again.json()["error"]


def test_schedules_are_listed_paused_and_resumed(client: TestClient, board: kanban.Board) -> None:
    from kanban import schedules
    from kanban.states import ScheduleKind

    template = schedules.card_template("standup", profile=None, body="", repo=None)
    board.schedules.add("0 9 * * *", name="standup", kind=ScheduleKind.CARD, template=template)
    assert [s["name"] for s in client.get("/api/schedules").json()] == ["standup"]
    assert client.post("/api/schedules/standup/pause", json={}).json()["paused"] is True
    assert client.post("/api/schedules/standup/resume", json={}).json()["paused"] is False
    missing = client.post("/api/schedules/nope/pause", json={})
    assert missing.status_code == 404 and "no schedule named 'nope'" in missing.json()["error"]


BAD = [
    # (method, path, body or raw bytes, content type, status, words in the message)
    (
        "post",
        "/api/cards/999/cancel",
        {},
        "application/json",
        404,
        "no card 999 on this board (see `kanban ls`)",
    ),
    ("get", "/api/cards/999", None, None, 404, "no card 999 on this board"),
    ("get", "/api/cards/abc", None, None, 400, "a card id is a positive number like 12, not 'abc'"),
    (
        "post",
        "/api/cards/1/unblock",
        {},
        "application/json",
        409,
        "card 1 is ready; `unblock` applies only to blocked cards",
    ),
    (
        "post",
        "/api/cards/1/archive",
        {},
        "application/json",
        409,
        "cards 2 wait for it; cancel or unlink them",
    ),
    ("post", "/api/cards/2/link", {"child": 1}, "application/json", 409, "close a cycle"),
    ("post", "/api/cards", b"{not json", "application/json", 400, "not valid JSON"),
    ("post", "/api/cards", b"[1, 2]", "application/json", 400, "takes a JSON object"),
    (
        "post",
        "/api/cards",
        {"title": "x", "colour": "red"},
        "application/json",
        400,
        "unknown field 'colour'",
    ),
    (
        "post",
        "/api/cards",
        {"title": "x", "priority": "high"},
        "application/json",
        400,
        "'priority' must be a whole number",
    ),
    (
        "post",
        "/api/cards",
        {"title": "x", "parents": [True]},
        "application/json",
        400,
        "a list of card ids",
    ),
    (
        "post",
        "/api/cards",
        {"body": "no title"},
        "application/json",
        400,
        "needs the field 'title'",
    ),
    ("post", "/api/cards", {"title": "   "}, "application/json", 400, "title"),
    (
        "post",
        "/api/cards",
        {"title": "x", "parents": [999]},
        "application/json",
        404,
        "no card 999",
    ),
    (
        "post",
        "/api/cards",
        b"title=x",
        "application/x-www-form-urlencoded",
        415,
        "Content-Type: application/json",
    ),
    (
        "post",
        "/api/cards/1/comment",
        {"body": "\x1b[2J"},
        "application/json",
        400,
        "control character",
    ),
    ("post", "/api/cards/1/fly", {}, "application/json", 404, "no card action 'fly'"),
    ("post", "/api/cards/1/link", {}, "application/json", 400, "give either parent"),
    ("post", "/api/goals/9/approve", {}, "application/json", 404, "no goal 9 on this board"),
    ("get", "/api/runs/77/log", None, None, 404, "no run 77"),
    ("get", "/api/nowhere", None, None, 404, "no such page /api/nowhere"),
    ("delete", "/api/cards/1", None, None, 405, "DELETE is not allowed"),
]


@pytest.mark.parametrize(("method", "path", "body", "kind", "status", "words"), BAD)
def test_bad_input_is_refused_with_the_cli_message_and_changes_nothing(
    client: TestClient,
    board: kanban.Board,
    method: str,
    path: str,
    body: object,
    kind: str | None,
    status: int,
    words: str,
) -> None:
    first = board.add("first")
    board.add("second", parents=[first.id])
    before = snapshot(board.engine)
    content = (
        body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    )
    headers = {"content-type": kind} if kind else {}
    answer = client.request(method.upper(), path, content=content, headers=headers)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]
    assert snapshot(board.engine) == before


def test_an_oversized_body_is_refused_before_it_is_read(
    client: TestClient, board: kanban.Board
) -> None:
    before = snapshot(board.engine)
    huge = json.dumps({"title": "x", "body": "y" * (webapp.MAX_BODY + 10)})
    answer = client.post("/api/cards", content=huge, headers={"content-type": "application/json"})
    assert answer.status_code == 413 and "over 2 MiB" in answer.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
        yield b'{"title": "x", "body": "'
        for _ in range(3):
            yield b"z" * (1024 * 1024)
        yield b'"}'

    streamed = client.post(
        "/api/cards", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert snapshot(board.engine) == before


def test_the_openapi_description_names_every_action(client: TestClient) -> None:
    from kanban.web import actions

    doc = client.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for name in actions.CARD_ACTIONS:
        assert f"/api/cards/{{card}}/{name}" in doc["paths"]
    add = doc["paths"]["/api/cards"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert add["additionalProperties"] is False and add["required"] == ["title"]
    assert {"/api/events", "/api/status", "/api/goals", "/api/schedules"} <= set(doc["paths"])


def test_edit_is_kanban_edit(client: TestClient, board: kanban.Board, cli: Any) -> None:
    card = board.add("old title")
    answer = client.patch(f"/api/cards/{card.id}", json={"title": "new title", "priority": 4})
    assert answer.status_code == 200
    assert answer.json()["changed"] == {
        "title": {"from": "old title", "to": "new title"},
        "priority": {"from": 0, "to": 4},
    }
    assert set(answer.json()) == set(
        json.loads(cli.ok("edit", str(card.id), "--priority", "5", "--json").output)
    )
    assert board.get(card.id).title == "new title"
    before = snapshot(board.engine)
    for bad in ({"colour": "red"}, {"priority": "high"}, {}, {"profile": "no-such-profile"}):
        refused = client.patch(f"/api/cards/{card.id}", json=bad)
        assert refused.status_code in (400, 404, 422), (bad, refused.text)
    assert snapshot(board.engine) == before
    board.archive(card.id)
    assert client.post(f"/api/cards/{card.id}/unarchive", json={}).json()["status"] == "ready"


@pytest.mark.parametrize(
    ("argv", "method", "path", "body"),
    [
        (["show", "999"], "GET", "/api/cards/999", None),
        (["unblock", "1"], "POST", "/api/cards/1/unblock", {}),
        (["link", "2", "1"], "POST", "/api/cards/1/link", {"parent": 2}),
        (["archive", "1"], "POST", "/api/cards/1/archive", {}),
    ],
)
def test_the_api_refuses_with_the_cli_message_and_exit_code(
    client: TestClient,
    board: kanban.Board,
    cli: Any,
    argv: list[str],
    method: str,
    path: str,
    body: object,
) -> None:
    first = board.add("first")
    board.add("second", parents=[first.id])
    said = cli(*argv)
    answer = client.request(method, path, json=body) if body is not None else client.get(path)
    assert said.exit_code != 0
    assert said.output.strip() == f"kanban: {answer.json()['error']}"
    assert answer.json()["exit_code"] == said.exit_code
