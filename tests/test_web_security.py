"""Who may use the web board: loopback or a token, login cookies, CSRF, read-only, escaping."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import kanban
from kanban import errors, web
from kanban.testing import snapshot
from kanban.web import security

TOKEN = "s3cret-token-for-tests-0123456789"


def client_for(board: kanban.Board, **access: Any) -> TestClient:
    return TestClient(
        web.create_app(board, access=web.Access(**access)), base_url="https://127.0.0.1"
    )


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


@pytest.fixture
def guarded(board: kanban.Board) -> Iterator[TestClient]:
    with client_for(board, token=TOKEN) as c:
        yield c


def test_a_network_address_without_a_token_is_refused_at_start(cli: Any) -> None:
    said = cli("serve", "--host", "0.0.0.0")
    assert said.exit_code == 2
    assert "no token is set; set KANBAN_WEB_TOKEN (or pass --token-file FILE)" in said.output
    assert "keep the default --host 127.0.0.1" in said.output


def test_bind_and_token_rules() -> None:
    security.check_bind("127.0.0.1", None)
    security.check_bind("::1", None)
    security.check_bind("localhost", None)
    security.check_bind("0.0.0.0", TOKEN)
    with pytest.raises(errors.UsageError, match="reachable from other machines"):
        security.check_bind("192.168.1.4", None)
    assert security.load_token(token_file=None, env={}) is None
    assert security.load_token(token_file=None, env={"KANBAN_WEB_TOKEN": f" {TOKEN}\n"}) == TOKEN
    with pytest.raises(errors.UsageError, match="use at least 16 random"):
        security.load_token(token_file=None, env={"KANBAN_WEB_TOKEN": "short"})


def test_token_file_is_read_and_a_missing_one_is_named(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert (
        security.load_token(token_file=path, env={"KANBAN_WEB_TOKEN": "ignored-value-ignored"})
        == TOKEN
    )
    with pytest.raises(errors.UsageError, match="cannot read the token file"):
        security.load_token(token_file=tmp_path / "nope", env={})


def test_the_api_needs_the_bearer_token(guarded: TestClient, board: kanban.Board) -> None:
    board.add("secret plans")
    before = snapshot(board.engine)
    for headers in (
        {},
        {"authorization": "Bearer wrong-token-wrong-token"},
        {"authorization": TOKEN},
    ):
        answer = guarded.get("/api/cards", headers=headers)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
        assert "needs its token" in answer.json()["error"]
        assert guarded.post("/api/cards", json={"title": "x"}, headers=headers).status_code == 401
        assert guarded.get("/api/events", headers=headers).status_code == 401
    assert snapshot(board.engine) == before
    ok = guarded.get("/api/cards", headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()[0]["title"] == "secret plans"


def test_browsers_log_in_for_a_secure_http_only_cookie(
    guarded: TestClient, board: kanban.Board
) -> None:
    board.add("secret plans")
    first = guarded.get("/", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login?next=/"
    login = guarded.get("/login")
    assert "secret plans" not in login.text
    csrf = csrf_of(login.text)
    wrong = guarded.post("/login", data={"token": "nope", "csrf": csrf})
    assert wrong.status_code == 401 and "not the board" in wrong.text
    right = guarded.post(
        "/login?next=/", data={"token": TOKEN, "csrf": csrf}, follow_redirects=False
    )
    assert right.status_code == 303
    cookie = right.headers["set-cookie"]
    assert cookie.startswith(f"{security.SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=strict" in cookie
    assert TOKEN not in cookie  # the cookie is derived from the token, not the token
    assert "secret plans" in guarded.get("/").text
    assert guarded.get("/api/cards").status_code == 200  # the cookie works for the page's fetches


def test_login_itself_needs_the_csrf_value(guarded: TestClient) -> None:
    guarded.get("/login")
    refused = guarded.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert refused.status_code == 403 and "CSRF" in refused.text


def test_form_posts_need_the_csrf_value_of_this_browser(board: kanban.Board) -> None:
    card = board.add("guarded")
    with client_for(board) as c:
        page = c.get(f"/cards/{card.id}")
        before = snapshot(board.engine)
        no_field = c.post(f"/cards/{card.id}/comment", data={"body": "hi"})
        forged = c.post(f"/cards/{card.id}/comment", data={"body": "hi", "csrf": "guessed"})
        assert no_field.status_code == forged.status_code == 403
        assert snapshot(board.engine) == before
        c.cookies.clear()  # another site's form: it cannot send this browser's cookie
        stolen = c.post(
            f"/cards/{card.id}/comment", data={"body": "hi", "csrf": csrf_of(page.text)}
        )
        assert stolen.status_code == 403 and snapshot(board.engine) == before
    with client_for(board) as c:
        csrf = csrf_of(c.get(f"/cards/{card.id}").text)
        done = c.post(
            f"/cards/{card.id}/comment", data={"body": "hi", "csrf": csrf}, follow_redirects=False
        )
        assert done.status_code == 303
        assert [m.body for m in board.show(card.id).comments] == ["hi"]


def test_read_only_shows_everything_and_changes_nothing(board: kanban.Board) -> None:
    card = board.add("look, do not touch")
    board.block(card.id, reason="why?")
    with client_for(board, read_only=True) as c:
        page = c.get(f"/cards/{card.id}")
        assert page.status_code == 200 and "look, do not touch" in page.text
        assert "<form" not in page.text and "read-only" in page.text
        before = snapshot(board.engine)
        api = c.post(f"/api/cards/{card.id}/unblock", json={"note": "x"})
        assert api.status_code == 403 and "read-only" in api.json()["error"]
        form = c.post(f"/cards/{card.id}/unblock", data={"note": "x", "csrf": "x"})
        assert form.status_code == 403
        assert c.post("/api/cards", json={"title": "new"}).status_code == 403
        assert snapshot(board.engine) == before


def test_a_tokenless_board_answers_only_to_loopback_names(board: kanban.Board) -> None:
    with TestClient(web.create_app(board), base_url="https://evil.example") as c:
        answer = c.get("/api/cards")
        assert answer.status_code == 421 and "loopback only" in answer.json()["error"]
    with TestClient(web.create_app(board), base_url="http://localhost:8700") as c:
        assert c.get("/api/cards").status_code == 200


def test_the_api_refuses_simple_cross_site_posts(board: kanban.Board) -> None:
    with client_for(board) as c:
        before = snapshot(board.engine)
        plain = c.post(
            "/api/cards", content=b'{"title": "x"}', headers={"content-type": "text/plain"}
        )
        assert plain.status_code == 415
        assert snapshot(board.engine) == before


def test_card_text_is_never_html(board: kanban.Board) -> None:
    hostile = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    card = board.add(hostile, body=hostile, profile="demo")
    board.comment(card.id, hostile)
    board.block(card.id, reason=hostile)
    with client_for(board) as c:
        for page in (c.get("/"), c.get(f"/?card={card.id}"), c.get(f"/cards/{card.id}")):
            assert "<img src=x" not in page.text and "<script>alert" not in page.text
            assert "&lt;img src=x onerror=" in page.text
