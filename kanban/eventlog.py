"""The event history as lines a person reads: the dispatcher's log and `kanban events`.

Every change to a card appends an event in the same transaction (board verbs), so following
the history after an id is a complete, ordered account of what happened, whoever did it (this
dispatcher, a supervisor, another host, a person). The dispatcher's log follows it and prints
one line per event a person cares about (claimed, started, done, failed with the reason and
the retry time, blocked, spawn failure, reclaimed); `--log-json` prints the same as JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Collection
from typing import Any

from kanban import api, board, clock, errors, views

logger = logging.getLogger("kanban.events")

POLL_INTERVAL = 0.5
# What the dispatcher's log shows; `kanban events` shows every kind.
RUN_KINDS = frozenset({"claimed", "started", "run_ended"})
FAILED = frozenset({"failed", "crashed", "timed_out", "spawn_failed", "reclaimed"})


def describe(event: views.EventView, *, title: str | None = None, now: dt.datetime) -> str:
    """One line for `event`: `card 12 "Title" failed (attempt 1): ...; retry in 30s`."""
    data = dict(event.data or {})
    who = f"card {event.card_id}" if event.card_id is not None else "board"
    if title:
        who += f" {_quote(title)}"
    kind = event.kind
    if kind == "claimed":
        return f"{who} claimed: attempt {data.get('attempt')} on {data.get('host')}"
    if kind == "started":
        where = f" in {data['worktree']}" if data.get("worktree") else ""
        return f"{who} started: agent pid {data.get('pid')}{where}"
    if kind == "run_ended":
        return f"{who} {_ended(data, now)}"
    if kind == "status":
        because = f" ({data['because']})" if data.get("because") else ""
        return f"{who} {data.get('from')} -> {data.get('to')}{because}"
    details = ", ".join(f"{k}={v}" for k, v in data.items() if v not in (None, "", [], {}))
    return f"{who} {kind}" + (f": {details}" if details else "")


def _ended(data: dict[str, Any], now: dt.datetime) -> str:
    outcome = str(data.get("outcome"))
    status = data.get("card_status")
    error = data.get("error")
    attempt = f" (attempt {data['attempt']})" if data.get("attempt") else ""
    if outcome == "done":
        return "done" + (", waiting for review" if status == "review" else "")
    if outcome == "blocked":
        return f"blocked{attempt}: {error or 'the agent asked for a person'}"
    text = f"{outcome.replace('_', ' ')}{attempt}" + (f": {error}" if error else "")
    retry = data.get("retry_at")
    if status == "blocked":
        return f"{text}; blocked: no attempts left"
    if retry:
        at = dt.datetime.fromisoformat(str(retry))
        left = max(0.0, (at - now).total_seconds())
        return f"{text}; retry at {clock.iso(at)} (in {clock.human(left)})"
    return text


def _quote(title: str, limit: int = 48) -> str:
    title = " ".join(title.split())
    return json.dumps(title if len(title) <= limit else title[: limit - 1] + "…")


def to_json(event: views.EventView, *, title: str | None = None) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": clock.iso(event.at),
        "card": event.card_id,
        "title": title,
        "run": event.run_id,
        "kind": event.kind,
        "actor": event.actor,
        "data": views.jsonable(dict(event.data or {})),
    }


class Follower:
    """Reads the history after the last id it has seen, in batches; knows card titles."""

    def __init__(
        self,
        board_: api.Board,
        *,
        after_id: int | None = None,
        card_id: int | None = None,
        kinds: Collection[str] = (),
        since: dt.datetime | None = None,
    ) -> None:
        self.board = board_
        self.after_id = (
            after_id if after_id is not None else board_.tx.read(board.history.last_event_id)
        )
        self.card_id = card_id
        self.kinds = tuple(kinds)
        self.since = since
        self._titles: dict[int, str] = {}

    def poll(self) -> list[tuple[views.EventView, str | None]]:
        found = self.board.tx.read(
            lambda c: board.history.events_after(
                c,
                after_id=self.after_id,
                card_id=self.card_id,
                kinds=self.kinds,
                since=self.since,
            )
        )
        if found:
            self.after_id = found[-1].id
        return [(e, self.title(e.card_id)) for e in found]

    def title(self, card_id: int | None) -> str | None:
        if card_id is None:
            return None
        if card_id not in self._titles:
            try:
                self._titles[card_id] = self.board.get(card_id).title
            except errors.CardNotFound:
                return None
        return self._titles[card_id]


def follow_in_thread(
    board_: api.Board,
    *,
    stop: threading.Event,
    emit: Callable[[views.EventView, str | None], None],
    kinds: Collection[str] = RUN_KINDS,
    interval: float = POLL_INTERVAL,
) -> threading.Thread:
    """Emit each new event of `kinds` from now on until `stop` is set (the dispatcher's log).
    A failed read is logged and tried again; the thread never stops the dispatcher."""
    follower = Follower(board_, kinds=kinds)

    def loop() -> None:
        while True:
            try:
                for event, title in follower.poll():
                    emit(event, title)
            except errors.KanbanError as exc:
                logger.warning("could not read the event history: %s", exc.message)
            if stop.wait(interval):
                for event, title in _final(follower):
                    emit(event, title)
                return

    thread = threading.Thread(target=loop, name="kanban-eventlog", daemon=True)
    thread.start()
    return thread


def _final(follower: Follower) -> list[tuple[views.EventView, str | None]]:
    try:
        return follower.poll()
    except errors.KanbanError:
        return []


def log_event(event: views.EventView, title: str | None) -> None:
    """The dispatcher's log line for `event` (a warning for failures and blocks)."""
    data = event.data or {}
    bad = event.kind == "run_ended" and data.get("outcome") in FAILED | {"blocked"}
    logger.log(
        logging.WARNING if bad else logging.INFO,
        describe(event, title=title, now=clock.now()),
        extra={"event": to_json(event, title=title)},
    )


class JsonFormatter(logging.Formatter):
    """`--log-json`: one JSON object a line; an event's fields under `event`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "at": clock.iso(dt.datetime.fromtimestamp(record.created, dt.UTC)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if event is not None:
            line["event"] = event
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
