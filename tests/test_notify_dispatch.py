"""Delivery by dispatchers: beside the ticks (a hanging receiver delays no claim), after a
kill -9 (nothing lost), and from several dispatchers at once (each delivery made once)."""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import kanban
from kanban import clock, dispatcher
from kanban.board import outbox, subscriptions
from kanban.notify import courier
from kanban.testing import (
    ParkedSpawner,
    Receiver,
    board_in,
    drain,
    kanban_process,
    kill_run_processes,
    wait_for,
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def subscribe(b: kanban.Board, url: str) -> None:
    b.tx.write(
        lambda c: subscriptions.add_subscription(
            c, name="hook", url=url, format="json", now=clock.now()
        )
    )


def deliveries(b: kanban.Board) -> list[outbox.DeliveryView]:
    return b.tx.read(lambda c: outbox.list_deliveries(c, limit=1000))


def test_a_hanging_receiver_never_delays_claims_or_ticks(
    repo: Path, repo_db: str, receiver: Receiver
) -> None:
    board = board_in(repo, db=repo_db, notify_timeout="20s")
    subscribe(board, receiver.url)
    receiver.hold()
    d = dispatcher.Dispatcher(board, spawner=ParkedSpawner(board), interval=0.2)
    stop = threading.Event()
    loop = threading.Thread(target=d.run, kwargs={"stop": stop})
    loop.start()
    try:
        asks = board.add("Needs a person", profile="demo")
        board.block(asks.id, reason="Which database?")
        wait_for(receiver.holding.is_set, timeout=30, what="the courier inside its request")
        # The courier is stuck in a request that will not answer; the board carries on.
        work = board.add("Work", profile="demo")
        wait_for(lambda: board.get(work.id).status == "running", what="the claim", timeout=30)
        ticks = [d.tick() for _ in range(3)]
        assert all(t.started for t in ticks)
        assert receiver.holding.is_set()
        [held] = deliveries(board)
        assert held.state == "pending" and held.attempts == 0
        receiver.release()
        wait_for(lambda: deliveries(board)[0].state == "sent", timeout=30, what="the delivery")
    finally:
        receiver.release()
        stop.set()
        loop.join(timeout=60)
        board.close()
    assert not loop.is_alive()


def test_a_dispatcher_killed_before_delivering_loses_nothing(
    repo: Path, repo_db: str, receiver: Receiver
) -> None:
    board = board_in(repo, db=repo_db)
    subscribe(board, receiver.url)
    env = {"KANBAN_NOTIFY_TIMEOUT": "0.5s"}
    receiver.hold()
    first = kanban_process(repo, "dispatch", "-q", env=env)
    try:
        card = board.add("Needs a person", profile="demo")
        board.block(card.id, reason="Which database?")
        wait_for(receiver.holding.is_set, timeout=60, what="the first dispatcher's request")
    finally:
        first.kill()  # kill -9, in the middle of the delivery
        first.communicate(timeout=30)
    receiver.release()
    [pending] = deliveries(board)
    assert pending.state == "pending" and pending.attempts == 0
    second = kanban_process(repo, "dispatch", "-q", env=env)
    try:
        wait_for(lambda: deliveries(board)[0].state == "sent", timeout=60, what="redelivery")
    finally:
        second.terminate()
        second.communicate(timeout=30)
        board.close()
    ids = {headers["Idempotency-Key"] for headers, _, _ in receiver.requests}
    assert ids == {pending.event_id}  # the receiver can tell the two attempts are one event
    assert len(receiver.requests) == 2


def test_two_dispatchers_on_one_board_send_each_delivery_once(
    board_url: str, receiver: Receiver
) -> None:
    receiver.default = 200
    receiver.answers = [(200, 0.02)] * 60  # slow enough for the two to overlap
    boards = [kanban.open_board(board_url, notify_timeout="5s") for _ in range(2)]
    try:
        subscribe(boards[0], receiver.url)
        for n in range(30):
            card = boards[0].add(f"card {n}", profile="demo")
            boards[0].block(card.id, reason="?")
        sent = collections.Counter[str]()

        def work(b: kanban.Board, name: str) -> None:
            c = courier.Courier(b, name=name, batch=3)
            while b.tx.read(outbox.next_due) is not None:
                sent[name] += c.deliver_due()["sent"]

        threads = [
            threading.Thread(target=work, args=(b, f"host-{i}")) for i, b in enumerate(boards)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        ids = collections.Counter(h["Idempotency-Key"] for h, _, _ in receiver.requests)
        assert len(ids) == 30 and set(ids.values()) == {1}
        assert sum(sent.values()) == 30
        assert all(d.state == "sent" and d.attempts == 1 for d in deliveries(boards[0]))
    finally:
        for b in boards:
            b.close()


def test_real_agents_blocking_failing_and_finishing_are_all_told_before_drain_exits(
    repo: Path, repo_db: str, receiver: Receiver
) -> None:
    board = board_in(repo, db=repo_db)
    try:
        subscribe(board, receiver.url)
        asks = board.add("Pick a database", profile="demo", body="demo: block Postgres or MySQL?")
        breaks = board.add("Flaky", profile="demo", body="demo: fail disk full", max_attempts=1)
        works = board.add("Write the parser", profile="demo")
        drain(repo)
        assert board.tx.read(outbox.next_due) is None
    finally:
        kill_run_processes(board)
        board.close()
    told = {(e["card"]["id"], e["kind"]) for e in receiver.bodies()}
    assert told == {(asks.id, "blocked"), (breaks.id, "failed"), (works.id, "done")}
    [question] = [e for e in receiver.bodies() if e["kind"] == "blocked"]
    assert question["card"]["reason"] == "Postgres or MySQL?"
    assert question["run"]["outcome"] == "blocked"
