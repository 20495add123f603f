"""The pages, in-process on both backends: columns and tiles, filters in the URL, folded
columns, the selected card's dependencies, dispatchers, goals, the card view and its forms,
the log, and the event feed's cursor."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from starlette.testclient import TestClient

import kanban
from kanban import board as verbs
from kanban import clock, plans, views, web
from kanban.states import RunOutcome
from kanban.web import feed


@pytest.fixture
def client(board: kanban.Board) -> Iterator[TestClient]:
    with TestClient(web.create_app(board), base_url="https://127.0.0.1") as c:
        yield c


def column(html: str, status: str) -> str:
    found = re.search(
        rf'data-status="{status}">(.*?)</div>\s*(?=<div class="column|<div class="finished|</section>)',
        html,
        re.S,
    )
    assert found, f"no {status} column"
    return found.group(1)


def finished_run(
    board: kanban.Board,
    card_id: int,
    *,
    outcome: RunOutcome,
    error: str | None = None,
    log: Path | None = None,
) -> None:
    won = board.claim(card_id=card_id, worker="tester")
    assert won is not None
    board.tx.write(
        lambda c: verbs.record_start(
            c,
            card_id=card_id,
            token=won.token,
            now=clock.now(),
            worktree="/w/tree",
            branch="kanban/x",
            log_path=str(log) if log else None,
        )
    )
    board.tx.write(
        lambda c: verbs.record_usage(
            c, card_id=card_id, token=won.token, tokens_in=1200, tokens_out=340, cost_usd=0.42
        )
    )
    board.end_run(
        card_id, token=won.token, outcome=outcome, error=error, exit_code=3 if error else 0
    )


def test_the_board_has_a_column_per_state_with_counts_and_tiles(
    client: TestClient, board: kanban.Board
) -> None:
    a = board.add("write the parser", profile="demo", priority=5)
    board.add("use the parser", parents=[a.id], profile="demo")
    blocked = board.add("pick a database")
    board.block(blocked.id, reason="Postgres or SQLite?")
    retried = board.add("flaky one", profile="demo", max_attempts=3)
    finished_run(board, retried.id, outcome=RunOutcome.FAILED, error="boom")
    reviewed = board.add("check me", review=True)
    html = client.get("/").text
    ready = column(html, "ready")
    assert "write the parser" in ready and "P5" in ready and "demo" in ready
    assert "flaky one" in ready and "retry 1" in ready and "backoff" in ready and "$0.42" in ready
    assert "use the parser" in column(html, "todo")
    assert "Postgres or SQLite?" in column(html, "blocked")
    assert f'data-card="{reviewed.id}"' in ready and "review" in ready
    counts = dict(
        re.findall(
            r'data-status="(\w+)">\s*<h2><span class="dot"></span>\w+ <span class="count">(\d+)',
            html,
        )
    )
    assert counts["ready"] == "3" and counts["todo"] == "1" and counts["blocked"] == "1"
    as_json = client.get("/", headers={"accept": "application/json"}).json()
    assert as_json["columns"]["ready"]["count"] == 3
    assert {c["title"] for c in as_json["columns"]["blocked"]["cards"]} == {"pick a database"}


def test_done_and_archived_are_folded_with_a_count(client: TestClient, board: kanban.Board) -> None:
    for i in range(12):
        board.complete(board.add(f"finished {i}").id)
    old = board.add("old")
    board.complete(old.id)
    board.archive(old.id)
    html = client.get("/").text
    done = column(html, "done")
    assert '<span class="count">12</span>' in done and "<details>" in done
    assert done.count("data-card=") == 8  # the latest few, newest first
    assert "finished 11" in done and "finished 0" not in done
    assert 'href="/?status=done"' in done
    assert '<span class="count">1</span>' in column(html, "archived")
    everything = client.get("/?status=done").text
    assert everything.count("data-card=") == 12


def test_filters_live_in_the_url(client: TestClient, board: kanban.Board) -> None:
    board.add("alpha parser", profile="demo")
    board.add("beta parser", profile="shell")
    board.add("gamma", profile="demo")
    plan = plans.check_plan(
        {"cards": [{"key": "g", "title": "goal step", "profile": "demo"}]}, known_profiles=["demo"]
    )
    goal = board.goals.add("a goal", plan=plan)
    tiles = lambda url: re.findall(r'<div class="title">([^<]+)</div>', client.get(url).text)  # noqa: E731
    assert sorted(tiles("/?q=parser")) == ["alpha parser", "beta parser"]
    assert sorted(tiles("/?profile=demo")) == ["alpha parser", "gamma", "goal step"]
    assert tiles(f"/?goal={goal.id}") == ["goal step"]
    assert tiles("/?status=triage") == ["goal step"]
    assert tiles("/?q=parser&profile=shell") == ["beta parser"]
    page = client.get("/?q=parser&profile=shell").text
    assert 'value="parser"' in page and "<option selected>shell</option>" in page
    bad = client.get("/?status=sideways")
    assert bad.status_code == 400 and "unknown status &#39;sideways&#39;" in bad.text


def test_the_selected_card_shows_its_dependencies(client: TestClient, board: kanban.Board) -> None:
    a = board.add("schema")
    b = board.add("queries", parents=[a.id])
    c = board.add("api", parents=[b.id])
    html = client.get(f"/?card={b.id}").text
    panel = html.split('id="selected"')[1].split("</section>")[0]
    waits, unlocks = panel.split("Unlocks")
    assert f"#{a.id} schema" in waits and f"#{c.id} api" in unlocks
    assert re.search(rf'class="tile parent"\s+href="/\?card={a.id}"', html)
    assert re.search(rf'class="tile child"\s+href="/\?card={c.id}"', html)
    assert re.search(rf'class="tile selected"\s+href="/\?card={b.id}"', html)


def test_dispatchers_and_goals_with_their_turns(client: TestClient, board: kanban.Board) -> None:
    now = clock.now()

    def beat(name: str, at: dt.datetime) -> None:
        board.tx.write(
            lambda c: verbs.dispatchers.beat(
                c,
                name=name,
                host=name.split(":")[0],
                pid=1,
                started_at=at,
                now=at,
                interval=5,
                version="test",
            )
        )

    beat("hostA:1", now)
    beat("hostB:2", now - dt.timedelta(hours=1))
    plan = plans.check_plan(
        {"cards": [{"key": "g", "title": "step", "profile": "demo"}]}, known_profiles=["demo"]
    )
    goal = board.goals.add("ship the release", plan=plan, max_turns=5)
    html = client.get("/").text
    side = html.split('id="dispatchers"')[1]
    assert "dispatcher alive: hostA:1" in side and 'h-alive"></span>hostA:1' in side
    assert 'h-silent"></span>hostB:2' in side
    goals_panel = html.split('id="goals"')[1].split("</section>")[0]
    assert f"#{goal.id} ship the release" in goals_panel and "proposed" in goals_panel
    assert "turn 1 of 5" in goals_panel
    goal_page = client.get(f"/goals/{goal.id}").text
    assert "Approve the plan" in goal_page and "Turn 1" in goal_page and "step" in goal_page


def test_the_card_view_shows_everything(
    client: TestClient, board: kanban.Board, tmp_path: Path
) -> None:
    parent = board.add("parent card")
    card = board.add("the card", body="line one\nline two", profile="demo", max_attempts=3)
    child = board.add("child card", parents=[card.id])
    board.link(parent.id, card.id)
    board.complete(parent.id)
    log = tmp_path / "run.log"
    log.write_text("[kanban] started\nagent says hello\n")
    finished_run(board, card.id, outcome=RunOutcome.FAILED, error="tests failed: 3", log=log)
    board.comment(card.id, "try the other approach")
    html = client.get(f"/cards/{card.id}").text
    assert "line one\nline two" in html
    assert f"#{parent.id} parent card" in html and f"#{child.id} child card" in html
    runs = html.split('id="runs"')[1].split("</section>")[0]
    for shown in ("1/3", "failed", ">3<", "1200 / 340", "$0.42", "tests failed: 3"):
        assert shown in runs, shown
    assert "agent says hello" in html
    assert "try the other approach" in html
    assert "/w/tree" in html
    history = html.split('id="history"')[1]
    assert "run_ended" in history and "claimed" in history and "created" in history
    assert (
        client.get(f"/cards/{card.id}", headers={"accept": "application/json"}).json()["card"]["id"]
        == card.id
    )


def test_the_log_is_read_from_an_offset_while_the_run_lives(
    client: TestClient, board: kanban.Board, tmp_path: Path
) -> None:
    card = board.add("long job")
    won = board.claim(card_id=card.id)
    assert won is not None
    log = tmp_path / "live.log"
    log.write_text("first line\n")
    board.tx.write(
        lambda c: verbs.record_start(
            c, card_id=card.id, token=won.token, now=clock.now(), log_path=str(log)
        )
    )
    first = client.get(f"/api/runs/{won.run_id}/log").json()
    assert first["text"] == "first line\n" and first["live"] is True
    with log.open("a") as fh:
        fh.write("second line\n")
    more = client.get(f"/api/runs/{won.run_id}/log?offset={first['offset']}").json()
    assert more["text"] == "second line\n" and more["offset"] == log.stat().st_size
    board.end_run(card.id, token=won.token, outcome=RunOutcome.DONE)
    assert client.get(f"/api/runs/{won.run_id}/log?offset={more['offset']}").json()["live"] is False
    page = client.get(f"/cards/{card.id}").text
    assert 'data-live="false"' in page and "second line" in page


def test_forms_act_through_the_verbs_and_show_refusals(
    client: TestClient, board: kanban.Board
) -> None:
    card = board.add("stuck")
    board.block(card.id, reason="which way?")
    page = client.get(f"/cards/{card.id}").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf and "Unblock" in page
    token = csrf.group(1)
    done = client.post(
        f"/cards/{card.id}/unblock", data={"note": "go left", "csrf": token}, follow_redirects=False
    )
    assert done.status_code == 303 and board.get(card.id).status == "ready"
    assert board.show(card.id).comments[-1].body == "go left"
    again = client.post(f"/cards/{card.id}/unblock", data={"note": "x", "csrf": token})
    assert again.status_code == 409 and "`unblock` applies only to blocked cards" in again.text
    added = client.post(
        "/cards",
        data={"title": "from the page", "parents": str(card.id), "priority": "2", "csrf": token},
        follow_redirects=False,
    )
    assert added.status_code == 303
    made = board.cards(search="from the page")[0]
    assert made.parents == (card.id,) and made.priority == 2 and made.status == "todo"
    bad = client.post("/cards", data={"title": "x", "priority": "high", "csrf": token})
    assert bad.status_code == 400 and "priority must be a whole number" in bad.text


def ev(i: int) -> views.EventView:
    return views.EventView(
        id=i, card_id=1, run_id=None, at=clock.now(), actor=None, kind="x", data=None
    )


def test_the_feed_cursor_delivers_late_commits_and_never_twice() -> None:
    cursor = feed.Cursor(10)
    assert [e.id for e in cursor.fresh([ev(11), ev(13)], now=0.0)] == [11, 13]
    assert cursor.floor() == 11  # id 12 may still commit (PostgreSQL hands out ids before commit)
    assert [e.id for e in cursor.fresh([ev(12), ev(13), ev(14)], now=1.0)] == [12, 14]
    assert cursor.floor() == 14 and not cursor.holes
    cursor.fresh([ev(16)], now=2.0)
    assert cursor.floor() == 14
    cursor.fresh([], now=2.0 + feed.HOLE_WAIT)  # a rolled-back id is given up after a while
    assert cursor.floor() == 16


def test_one_watcher_wakes_every_open_stream_when_the_board_changes(board: kanban.Board) -> None:
    """The streams wait on the pulse instead of reading the events table on a timer."""
    pulse = feed.Pulse(board, poll=0.05)

    async def two_streams() -> None:
        pulse.join()
        pulse.join()
        watcher = pulse.thread
        changed = pulse.changed()
        with anyio.fail_after(60):
            while not changed.is_set():  # a change before the watcher's first look is missed
                await anyio.to_thread.run_sync(lambda: board.add("wake the streams"))
                with anyio.move_on_after(0.5):
                    await changed.wait()
        assert pulse.thread is watcher and pulse.changed() is not changed  # one watcher, re-armed
        pulse.leave()
        pulse.leave()

    anyio.run(two_streams)
    deadline = time.monotonic() + 60
    while pulse.thread is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pulse.thread is None  # it stops once no stream is open


def test_the_feed_reads_every_card_in_order(board: kanban.Board) -> None:
    start = board.tx.read(verbs.history.last_event_id)
    a = board.add("a")
    board.add("b")
    board.comment(a.id, "hello")
    found = board.tx.read(lambda c: verbs.history.events_after(c, after_id=start))
    assert [e.kind for e in found][:2] == ["created", "created"]
    assert [e.id for e in found] == sorted(e.id for e in found)
    assert board.tx.read(lambda c: verbs.history.events_after(c, after_id=found[-1].id)) == []


def test_the_edit_form_is_kanban_edit(client: TestClient, board: kanban.Board) -> None:
    card = board.add("typo in titel", priority=1)
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get(f"/cards/{card.id}").text)
    assert csrf
    form = {
        "title": "typo in title",
        "body": "",
        "profile": "",
        "priority": "3",
        "csrf": csrf.group(1),
    }
    done = client.post(f"/cards/{card.id}/edit", data=form, follow_redirects=False)
    assert done.status_code == 303
    edited = board.get(card.id)
    assert (edited.title, edited.priority) == ("typo in title", 3)
    assert board.show(card.id).events[-1].kind == "edited"


def test_responses_say_how_long_the_server_took(client: TestClient) -> None:
    timing = client.get("/").headers["server-timing"]
    assert timing.startswith("app;dur=") and float(timing.split("=")[1]) >= 0


def test_the_pages_and_assets_ship_inside_the_package() -> None:
    from importlib import resources

    web_files = resources.files("kanban.web")
    for name in ("board", "card", "goal", "login", "error", "base", "_tile"):
        assert (web_files / "templates" / f"{name}.html").is_file()
    script = (web_files / "static" / "board.js").read_text()
    assert "EventSource" in script and "http" not in script.replace("https://", "")  # no CDN
    assert "url(" not in (web_files / "static" / "board.css").read_text()  # no fetched assets
