"""Notifications against real receivers: an HTTP server on 127.0.0.1 in the test, real
command hooks, the outbox on real SQLite and PostgreSQL boards."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import kanban
from kanban import board as verbs
from kanban import clock
from kanban.board import outbox, subscriptions
from kanban.models import deliveries
from kanban.notify import courier, events
from kanban.states import CardStatus, GoalStatus, RunOutcome
from kanban.testing import Receiver

SECRET = "s3cret-for-tests"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def nboard(board_url: str) -> Iterator[kanban.Board]:
    """A board with quick notification settings and a web board to link to."""
    with kanban.open_board(
        board_url,
        web_url="http://127.0.0.1:8484/",
        notify_timeout="0.5s",
        notify_retry_for="1h",
    ) as b:
        yield b


def subscribe(b: kanban.Board, **kw: object) -> subscriptions.SubscriptionView:
    values: dict[str, object] = {"name": "hook", "now": clock.now(), "format": "json", **kw}
    return b.tx.write(lambda c: subscriptions.add_subscription(c, **values))  # type: ignore[arg-type]


def rows(b: kanban.Board) -> list[outbox.DeliveryView]:
    return list(reversed(b.tx.read(lambda c: outbox.list_deliveries(c, limit=1000))))


def later(seconds: float = 3600.0) -> dt.datetime:
    return clock.now() + dt.timedelta(seconds=seconds)


def fast_courier(b: kanban.Board, name: str = "test:1") -> courier.Courier:
    return courier.Courier(
        b, name=name, backoff_base=0.01, backoff_cap=0.05, environ={"HOOK_SECRET": SECRET}
    )


# ------------------------------------------------------------------ the outbox


def test_a_blocked_card_is_in_the_outbox_of_matching_subscriptions_only(
    nboard: kanban.Board,
) -> None:
    card = nboard.add("Parse the config", profile="demo")
    other = nboard.add("Other work", profile="shell")
    subscribe(nboard, name="all", url="http://127.0.0.1:9/x")
    subscribe(nboard, name="blocks", url="http://127.0.0.1:9/y", kinds=["blocked"])
    subscribe(nboard, name="one-card", url="http://127.0.0.1:9/z", card_id=other.id)
    subscribe(nboard, name="demo-only", url="http://127.0.0.1:9/w", kinds=["done"], profile="demo")
    nboard.block(card.id, reason="Which config format: TOML or YAML?")
    found = rows(nboard)
    assert sorted(d.subscription for d in found) == ["all", "blocks"]
    assert {d.event_id for d in found} and all(d.kind == "blocked" for d in found)
    assert found[0].title == "Parse the config" and found[0].status == "blocked"
    assert found[0].reason == "Which config format: TOML or YAML?"
    # Each subscription's delivery of one event carries a distinct id of its own event.
    nboard.complete(other.id)
    assert sorted(d.subscription for d in rows(nboard) if d.card_id == other.id) == [
        "all",
        "one-card",
    ]


def test_the_delivery_is_written_in_the_same_transaction_as_the_change(
    nboard: kanban.Board,
) -> None:
    card = nboard.add("Card", profile="demo")
    subscribe(nboard, url="http://127.0.0.1:9/x")

    def change_then_fail(conn: sa.Connection) -> None:
        verbs.move(conn, card_id=card.id, to=CardStatus.BLOCKED, now=clock.now(), reason="why")
        assert len(conn.execute(sa.select(deliveries.c.id)).all()) == 1  # inside: there
        raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        nboard.tx.write(change_then_fail)
    assert nboard.get(card.id).status == "ready" and rows(nboard) == []


def _statements(b: kanban.Board, fn: object) -> list[str]:
    seen: list[str] = []

    def count(_c: object, _cur: object, statement: str, *_a: object) -> None:
        seen.append(statement)

    sa.event.listen(b.engine, "before_cursor_execute", count)
    try:
        fn()  # type: ignore[operator]
    finally:
        sa.event.remove(b.engine, "before_cursor_execute", count)
    return [s for s in seen if "deliveries" in s or "subscriptions" in s]


def test_no_subscription_costs_one_statement_and_claims_cost_none(nboard: kanban.Board) -> None:
    card = nboard.add("Card", profile="demo")
    claimed: list[kanban.Claim] = []
    assert _statements(nboard, lambda: claimed.append(nboard.claim())) == []
    assert claimed[0] is not None
    token = claimed[0].token
    assert _statements(nboard, lambda: nboard.heartbeat(card.id, token=token)) == []
    ended = _statements(nboard, lambda: nboard.complete(card.id, token=token, summary="ok"))
    assert len(ended) == 1 and ended[0].lstrip().upper().startswith("INSERT")
    assert rows(nboard) == []


def test_kinds_of_run_ends() -> None:
    def kinds(outcome: str, status: str, error: str | None = None) -> tuple[str, ...]:
        data = {"outcome": outcome, "card_status": status, "error": error}
        return outbox.kinds_of("run_ended", data)

    assert kinds("done", "done") == ("done",)
    assert kinds("done", "review") == ("review",)
    assert kinds("blocked", "blocked", "which one?") == ("blocked",)
    assert kinds("blocked", "blocked", "cost cap reached: $2 of $1") == ("blocked", "cost_cap")
    assert kinds("failed", "blocked") == ("failed",)  # attempts spent
    assert kinds("crashed", "blocked") == ("crashed", "failed")
    assert kinds("reclaimed", "ready") == ("crashed",)
    assert kinds("failed", "ready") == ()  # retried: nobody needs to know yet
    assert outbox.kinds_of("claimed", {}) == ()
    assert outbox.kinds_of("requeued", {}) == ()  # a person sent it back: they know
    for moved in ("blocked", "failed", "done"):  # a person's move is told to the others
        assert outbox.kinds_of(moved, {"from": "running", "to": moved}) == (moved,)
    assert outbox.goal_kinds("proposed", None, auto=False) == ("approval",)
    assert outbox.goal_kinds("proposed", None, auto=True) == ()
    assert outbox.goal_kinds("blocked", "the cost budget is spent ($3)", auto=False) == (
        "goal_blocked",
        "cost_cap",
    )


def test_spent_attempts_and_a_reclaimed_run_notify_failed_and_crashed(
    nboard: kanban.Board,
) -> None:
    card = nboard.add("Flaky", profile="demo", max_attempts=1)
    subscribe(nboard, url="http://127.0.0.1:9/x", kinds=["failed", "crashed"])
    claim = nboard.claim(ttl=1)
    assert claim is not None
    nboard.reclaim_expired(now=later(5))
    assert sorted(d.kind for d in rows(nboard)) == ["crashed", "failed"]
    assert nboard.get(card.id).status == "blocked"
    assert rows(nboard)[0].data["outcome"] == RunOutcome.RECLAIMED


def test_goal_plan_waiting_and_goal_done_are_notified(nboard: kanban.Board) -> None:
    from kanban import plans
    from kanban.board import goals as goal_verbs

    subscribe(nboard, url="http://127.0.0.1:9/x", kinds=["approval", "goal_done"])
    now = clock.now()
    plan = plans.check_plan(
        {"cards": [{"key": "a", "title": "Step A", "profile": "demo"}]}, known_profiles=["demo"]
    )

    def make(conn: sa.Connection) -> int:
        goal = goal_verbs.create(
            conn, objective="Ship it", planner=None, judge=None, max_turns=3, auto=False, now=now
        )
        goal_verbs.start_turn(conn, goal_id=goal.id, now=now)
        goal_verbs.propose(conn, goal_id=goal.id, plan=plan, now=now)
        return goal.id

    goal_id = nboard.tx.write(make)
    [waiting] = rows(nboard)
    assert (waiting.kind, waiting.goal_id, waiting.title) == ("approval", goal_id, "Ship it")
    nboard.tx.write(lambda c: goal_verbs.approve(c, goal_id=goal_id, now=now))
    nboard.tx.write(
        lambda c: goal_verbs.finish(
            c, goal_id=goal_id, status=GoalStatus.DONE, now=now, reason="all done"
        )
    )
    assert [d.kind for d in rows(nboard)] == ["approval", "goal_done"]


def test_a_silent_dispatcher_is_notified_once(nboard: kanban.Board) -> None:
    subscribe(nboard, url="http://127.0.0.1:9/x", kinds=["silent"])
    old = clock.now() - dt.timedelta(hours=1)
    nboard.tx.write(
        lambda c: verbs.dispatchers.beat(
            c,
            name="pod-a:12",
            host="pod-a",
            pid=12,
            started_at=old,
            now=old,
            interval=60,
            version="0",
        )
    )
    c = fast_courier(nboard)
    assert c.watch_silence() == 1
    c.watch_silence()
    [quiet] = rows(nboard)
    assert quiet.kind == "silent" and quiet.data["dispatcher"] == "pod-a:12"


# ------------------------------------------------------------------ webhooks


def test_a_webhook_gets_the_stable_schema_signed_with_the_secret(
    nboard: kanban.Board, receiver: Receiver
) -> None:
    card = nboard.add("Parse the config", profile="demo")
    subscribe(nboard, url=receiver.url, secret_env="HOOK_SECRET")
    nboard.block(card.id, reason="TOML or YAML?")
    assert fast_courier(nboard).deliver_due() == {"sent": 1, "retrying": 0, "dead": 0}
    [(headers, body, path)] = receiver.requests
    evt = json.loads(body)
    assert path == "/hook"
    assert evt["schema"] == 1 and evt["kind"] == "blocked" and evt["id"].startswith("evt_")
    assert evt["card"] == {
        "id": card.id,
        "title": "Parse the config",
        "status": "blocked",
        "reason": "TOML or YAML?",
        "summary": None,
        "url": f"http://127.0.0.1:8484/cards/{card.id}",
        "answer_url": f"http://127.0.0.1:8484/cards/{card.id}#answer",
    }
    assert "TOML or YAML?" in evt["text"] and evt["created"]
    assert headers["Idempotency-Key"] == headers["Kanban-Event-Id"] == evt["id"]
    assert events.verify(SECRET, body, headers["Kanban-Signature"])
    assert not events.verify("wrong", body, headers["Kanban-Signature"])
    [sent] = rows(nboard)
    assert sent.state == "sent" and sent.attempts == 1 and sent.answer == "HTTP 200: received 200"


def test_a_failing_receiver_gets_the_same_event_and_bytes_until_it_answers(
    nboard: kanban.Board, receiver: Receiver
) -> None:
    card = nboard.add("Card", profile="demo")
    subscribe(nboard, url=receiver.url, secret_env="HOOK_SECRET")
    nboard.block(card.id, reason="help")
    receiver.answers = [500, 429]
    c = fast_courier(nboard)
    assert c.deliver_due() == {"sent": 0, "retrying": 1, "dead": 0}
    [waiting] = rows(nboard)
    assert waiting.state == "pending" and waiting.error == f"HTTP 500 from {receiver.url}"
    c.deliver_due(now=later())
    c.deliver_due(now=later())
    bodies = [body for _, body, _ in receiver.requests]
    assert len(bodies) == 3 and len(set(bodies)) == 1
    assert [h["Kanban-Delivery-Attempt"] for h, _, _ in receiver.requests] == ["1", "2", "3"]
    assert len({h["Idempotency-Key"] for h, _, _ in receiver.requests}) == 1
    [sent] = rows(nboard)
    assert sent.state == "sent" and sent.attempts == 3


def test_a_slow_receiver_times_out_and_is_retried(nboard: kanban.Board, receiver: Receiver) -> None:
    card = nboard.add("Card", profile="demo")
    subscribe(nboard, url=receiver.url)
    nboard.block(card.id, reason="help")
    receiver.answers = [(200, 3.0)]  # answers after the 0.5 s timeout
    c = fast_courier(nboard)
    assert c.deliver_due()["retrying"] == 1
    assert rows(nboard)[0].error == f"no answer from {receiver.url} within 0.5s"
    assert c.deliver_due(now=later())["sent"] == 1


def test_a_receiver_dripping_its_answer_is_cut_off_at_the_timeout(
    nboard: kanban.Board, receiver: Receiver
) -> None:
    card = nboard.add("Card", profile="demo")
    subscribe(nboard, url=receiver.url)
    nboard.block(card.id, reason="help")
    receiver.drip = 0.2  # each line well within the 0.5 s timeout; the whole answer not
    assert fast_courier(nboard).deliver_due()["retrying"] == 1
    assert rows(nboard)[0].error == f"no answer from {receiver.url} within 0.5s"


def test_a_receiver_that_is_down_then_back_gets_it(
    nboard: kanban.Board, receiver: Receiver
) -> None:
    card = nboard.add("Card", profile="demo")
    subscribe(nboard, url=receiver.url)
    receiver.down()
    nboard.block(card.id, reason="help")
    c = fast_courier(nboard)
    assert c.deliver_due()["retrying"] == 1
    assert "refused" in (rows(nboard)[0].error or "").lower()
    receiver.up()
    assert c.deliver_due(now=later())["sent"] == 1
    assert len(receiver.requests) == 1


def test_redirects_are_not_followed(nboard: kanban.Board, receiver: Receiver) -> None:
    elsewhere = Receiver()
    try:
        receiver.default = 302
        receiver.headers_out = {"Location": elsewhere.url + "?token=abc"}
        card = nboard.add("Card", profile="demo")
        subscribe(nboard, url=receiver.url)
        nboard.block(card.id, reason="help")
        fast_courier(nboard).deliver_due()
        assert elsewhere.requests == []
        assert "redirect to http://127.0.0.1" in (rows(nboard)[0].error or "")
        assert "not followed" in (rows(nboard)[0].error or "")
        assert "abc" not in (rows(nboard)[0].error or "")
    finally:
        elsewhere.close()


def test_a_delivery_dies_when_its_budget_is_spent_and_status_shows_it(
    board_url: str, receiver: Receiver, cli: object
) -> None:
    with kanban.open_board(board_url, notify_retry_for="0.2s", notify_timeout="0.5s") as b:
        card = b.add("Card", profile="demo")
        subscribe(b, url=receiver.url)
        b.block(card.id, reason="help")
        receiver.default = 503
        c = courier.Courier(b, name="t", backoff_base=0.5)
        assert c.deliver_due() == {"sent": 0, "retrying": 0, "dead": 1}
        [dead] = rows(b)
        assert dead.state == "dead" and dead.attempts == 1
    status_json = json.loads(cli.ok("status", "--json").output)  # type: ignore[attr-defined]
    assert status_json["notifications"] == {"pending": 0, "dead": 1}
    status = cli.ok("status").output  # type: ignore[attr-defined]
    assert "notifications: 1 dead" in status
    listed = cli.ok("notify", "ls").output  # type: ignore[attr-defined]
    assert "1 dead" in listed and "HTTP 503" in listed
    assert "HTTP 503" in cli.ok("notify", "log", "--dead").output  # type: ignore[attr-defined]
    cli.ok("notify", "redeliver", str(dead.id))  # type: ignore[attr-defined]
    receiver.default = 200
    with kanban.open_board(board_url) as b:
        assert fast_courier(b).deliver_due()["sent"] == 1
        assert rows(b)[0].event_id == dead.event_id


def test_slack_discord_and_ntfy_messages_are_readable(
    nboard: kanban.Board, receiver: Receiver
) -> None:
    card = nboard.add("Parse the config", profile="demo")
    for fmt in ("slack", "discord", "ntfy"):
        subscribe(nboard, name=fmt, url=f"{receiver.url}/{fmt}", format=fmt)
    nboard.block(card.id, reason="@everyone <!channel> TOML or YAML?")
    fast_courier(nboard).deliver_due()
    got = {path.rsplit("/", 1)[1]: (h, body) for h, body, path in receiver.requests}
    link = f"http://127.0.0.1:8484/cards/{card.id}#answer"  # a blocked card: its answer box
    slack = json.loads(got["slack"][1])
    assert slack["text"].startswith(f"Card {card.id} “Parse the config” is blocked")
    assert f"<{link}|Answer and unblock>" in slack["text"]
    assert "<!channel>" not in slack["text"] and "&lt;!channel&gt;" in slack["text"]
    discord = json.loads(got["discord"][1])
    assert discord["allowed_mentions"] == {"parse": []} and link in discord["content"]
    headers, text = got["ntfy"]
    assert text.decode().startswith(f"Card {card.id} “Parse the config” is blocked")
    assert headers["Click"] == link and headers["Title"] == "kanban: blocked"


# ------------------------------------------------------------------ command hooks


HOOK = """
import json, os, sys
event = json.load(sys.stdin)
out = {"stdin": event, "env": {k: v for k, v in os.environ.items()
                               if k.startswith("KANBAN_EVENT_")}}
open(sys.argv[1], "a").write(json.dumps(out) + "\\n")
print("hook saw", event["kind"])
sys.exit(int(sys.argv[2]))
"""


def test_a_command_hook_gets_the_event_on_stdin_and_in_variables(
    nboard: kanban.Board, tmp_path: Path
) -> None:
    script, seen = tmp_path / "hook.py", tmp_path / "seen.jsonl"
    script.write_text(HOOK)
    card = nboard.add("Card; rm -rf / $(echo pwned)", profile="demo")
    subscribe(
        nboard, command=[sys.executable, str(script), str(seen), "1"], secret_env="HOOK_SECRET"
    )
    nboard.block(card.id, reason="help")
    c = fast_courier(nboard)
    assert c.deliver_due()["retrying"] == 1  # exit 1: retried like a 500
    first = rows(nboard)[0]
    assert first.answer == "hook saw blocked\n" and "exited with 1" in (first.error or "")
    [record] = [json.loads(line) for line in seen.read_text().splitlines()]
    assert record["stdin"]["card"]["title"] == "Card; rm -rf / $(echo pwned)"
    env = record["env"]
    assert env["KANBAN_EVENT_KIND"] == "blocked" and env["KANBAN_EVENT_CARD_ID"] == str(card.id)
    assert env["KANBAN_EVENT_ID"] == record["stdin"]["id"]
    assert env["KANBAN_EVENT_CARD_URL"] == f"http://127.0.0.1:8484/cards/{card.id}"
    body = json.dumps(record["stdin"], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    assert events.verify(SECRET, body.encode(), env["KANBAN_EVENT_SIGNATURE"])


def test_a_hanging_command_hook_is_killed_at_the_timeout(
    nboard: kanban.Board, tmp_path: Path
) -> None:
    card = nboard.add("Card", profile="demo")
    subscribe(
        nboard,
        command=[sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"],
    )
    nboard.block(card.id, reason="help")
    assert fast_courier(nboard).deliver_due()["retrying"] == 1
    [waiting] = rows(nboard)
    assert "did not finish within 0.5s" in (waiting.error or "")
    assert waiting.answer == "started\n"


# ------------------------------------------------------------------ secrets


def test_credentials_and_tokens_in_urls_are_never_printed(cli: object, receiver: Receiver) -> None:
    url = f"http://bob:hunter2@127.0.0.1:{receiver.port}/services/T000/B000/XXXSECRETXXX?k=v"
    out = cli.ok("notify", "add", "--webhook", url, "--name", "s").output  # type: ignore[attr-defined]
    listed = cli.ok("notify", "ls").output  # type: ignore[attr-defined]
    as_json = cli.ok("notify", "ls", "--json").output  # type: ignore[attr-defined]
    for text in (out, listed, as_json):
        assert "hunter2" not in text and "XXXSECRETXXX" not in text and "bob" not in text
        assert f"http://***@127.0.0.1:{receiver.port}/services/***" in text
    receiver.default = 500
    tested = cli("notify", "test", "s")  # type: ignore[operator]
    assert tested.exit_code != 0
    assert "hunter2" not in tested.output and "XXXSECRETXXX" not in tested.output
    headers, _, _ = receiver.requests[0]
    assert headers["Authorization"] == "Basic Ym9iOmh1bnRlcjI="  # sent, not shown


def test_the_secret_is_read_at_delivery_time_and_never_stored(
    nboard: kanban.Board, receiver: Receiver
) -> None:
    card = nboard.add("Card", profile="demo")
    subscribe(nboard, url=receiver.url, secret_env="HOOK_SECRET")
    nboard.block(card.id, reason="help")
    missing = courier.Courier(nboard, name="t", environ={}, backoff_base=0.01)
    assert missing.deliver_due()["retrying"] == 1
    assert "HOOK_SECRET is not set" in (rows(nboard)[0].error or "")
    assert receiver.requests == []
    fast_courier(nboard).deliver_due(now=later())
    dumped = json.dumps(
        nboard.tx.read(
            lambda c: [
                list(r)
                for t in ("subscriptions", "deliveries")
                for r in c.execute(sa.text(f"SELECT * FROM {t}"))
            ]
        ),
        default=str,
    )
    assert SECRET not in dumped and "HOOK_SECRET" in dumped


def test_a_goal_scoped_subscription_hears_its_goal_and_its_cards_only(
    nboard: kanban.Board,
) -> None:
    from kanban.board import goals as goal_verbs

    now = clock.now()

    def make(conn: sa.Connection) -> tuple[int, int, int]:
        goal = goal_verbs.create(
            conn, objective="Ship it", planner=None, judge=None, max_turns=2, auto=True, now=now
        )
        mine, _ = verbs.add_card(conn, title="Of the goal", now=now, goal_id=goal.id)
        other, _ = verbs.add_card(conn, title="Elsewhere", now=now)
        return goal.id, mine.id, other.id

    goal_id, mine, other = nboard.tx.write(make)
    subscribe(nboard, url="http://127.0.0.1:9/x", goal_id=goal_id)
    nboard.block(mine, reason="?")
    nboard.block(other, reason="?")
    nboard.tx.write(
        lambda c: goal_verbs.finish(
            c, goal_id=goal_id, status=GoalStatus.BLOCKED, now=now, reason="turns spent"
        )
    )
    assert [(d.kind, d.card_id, d.goal_id) for d in rows(nboard)] == [
        ("blocked", mine, goal_id),
        ("goal_blocked", None, goal_id),
    ]


def test_sent_deliveries_are_pruned_after_a_month_and_unsent_ones_kept(
    nboard: kanban.Board, receiver: Receiver
) -> None:
    subscribe(nboard, url=receiver.url)
    c = fast_courier(nboard)
    for n, answer in enumerate((200, 500)):
        card = nboard.add(f"Card {n}", profile="demo")
        nboard.block(card.id, reason="?")
        receiver.default = answer
        c.deliver_due()
    assert [d.state for d in rows(nboard)] == ["sent", "pending"]
    c.step()  # the courier's own pruning leaves what is recent alone
    assert len(rows(nboard)) == 2
    assert nboard.tx.write(lambda conn: outbox.prune(conn, before=later(-60))) == 0
    assert nboard.tx.write(lambda conn: outbox.prune(conn, before=later(60))) == 1
    assert [d.state for d in rows(nboard)] == ["pending"]


def test_a_hanging_receiver_holds_up_only_its_own_messages(
    board_url: str, receiver: Receiver
) -> None:
    import threading

    from kanban.testing import wait_for

    healthy = Receiver()
    nboard = kanban.open_board(board_url, notify_timeout="30s")
    try:
        subscribe(nboard, name="hangs", url=receiver.url)
        subscribe(nboard, name="healthy", url=healthy.url)
        receiver.hold()
        card = nboard.add("Card", profile="demo")
        nboard.block(card.id, reason="?")
        c = courier.Courier(nboard, name="t", environ={})
        done: list[dict[str, int]] = []
        sending = threading.Thread(target=lambda: done.append(c.deliver_due()))
        sending.start()
        wait_for(receiver.holding.is_set, timeout=30, what="the hanging request")
        wait_for(lambda: healthy.requests, timeout=30, what="the healthy receiver's message")
        assert receiver.holding.is_set() and done == []  # delivered while the other hangs
        receiver.release()
        sending.join(timeout=30)
        assert done == [{"sent": 2, "retrying": 0, "dead": 0}]
    finally:
        receiver.release()
        healthy.close()
        nboard.close()
