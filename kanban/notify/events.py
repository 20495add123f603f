"""The event a receiver gets: one stable JSON schema, and readable Slack, Discord and ntfy
messages made from it; the HMAC-SHA256 signature of the exact body; URLs shown redacted.

Schema 1 (keys are only ever added):
  id          "evt_..." — the same on every retry of this event to this receiver
  kind        one of `kanban.board.outbox.KINDS` (or "test")
  created     ISO-8601 UTC time of the change
  board       the board's name (its repository's directory)
  text        one readable line
  card        {id, title, status, reason, summary, url, answer_url} or null (answer_url:
              a blocked card's answer box on the web board)
  goal        {id, title, status, reason, url} or null
  run         {id, outcome, attempt, exit_code, error} or null
  dispatcher  {name, host, pid, heartbeat_at} or null
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlsplit

from kanban.board import outbox

SCHEMA = 1
SIGNATURE_HEADER = "Kanban-Signature"  # "sha256=<hex HMAC-SHA256 of the body>"
MAX_TEXT = 1500  # what goes into a chat message from a card's reason or summary

_HEADLINES = {
    "blocked": "Card {ref} is blocked",
    "failed": "Card {ref} gave up",
    "review": "Card {ref} waits for review",
    "done": "Card {ref} is done",
    "approval": "Goal {ref}'s plan waits for approval",
    "goal_done": "Goal {ref} is done",
    "goal_blocked": "Goal {ref} is blocked",
    "crashed": "A run of card {ref} ended badly",
    "silent": "A dispatcher went silent",
    "cost_cap": "A cost cap was reached on {ref}",
    "test": "A test notification from kanban",
}


def event(delivery: outbox.DeliveryView, *, board: str, web_url: str | None) -> dict[str, Any]:
    """The schema-1 event for one delivery (pure)."""
    data = dict(delivery.data)
    card = goal = run = dispatcher = None
    if delivery.card_id is not None:
        card = {
            "id": delivery.card_id,
            "title": delivery.title,
            "status": delivery.status,
            "reason": delivery.reason,
            "summary": delivery.summary,
            "url": f"{web_url}/cards/{delivery.card_id}" if web_url else None,
        }
        # The web board's card page has the answer box of `unblock` at #answer.
        card["answer_url"] = (
            f"{card['url']}#answer" if card["url"] and delivery.status == "blocked" else None
        )
    if delivery.goal_id is not None and delivery.card_id is None:
        goal = {
            "id": delivery.goal_id,
            "title": delivery.title,
            "status": delivery.status,
            "reason": delivery.reason,
            "url": f"{web_url}/goals/{delivery.goal_id}" if web_url else None,
        }
    if delivery.run_id is not None or "outcome" in data:
        run = {
            "id": delivery.run_id,
            "outcome": data.get("outcome"),
            "attempt": data.get("attempt"),
            "exit_code": data.get("exit_code"),
            "error": data.get("error"),
        }
    if "dispatcher" in data:
        dispatcher = {k: data.get(k) for k in ("host", "pid", "heartbeat_at")}
        dispatcher["name"] = data["dispatcher"]
    found: dict[str, Any] = {
        "schema": SCHEMA,
        "id": delivery.event_id,
        "kind": delivery.kind,
        "created": delivery.at.isoformat(),
        "board": board,
        "card": card,
        "goal": goal,
        "run": run,
        "dispatcher": dispatcher,
    }
    found["text"] = headline(found)
    return found


def headline(evt: dict[str, Any]) -> str:
    subject = evt["card"] or evt["goal"]
    ref = f"{subject['id']} “{subject['title']}”" if subject else evt["board"]
    line = _HEADLINES.get(evt["kind"], evt["kind"]).format(ref=ref)
    detail = (subject or {}).get("reason") or (subject or {}).get("summary")
    if evt["dispatcher"]:
        quiet = evt["dispatcher"]
        detail = f"{quiet['name']}: no heartbeat since {quiet['heartbeat_at']}"
    return f"{line}: {_clip(detail)}" if detail else line


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link(evt: dict[str, Any]) -> str | None:
    """Where a message's link goes: a blocked card's answer box, else the card or goal."""
    subject = evt["card"] or evt["goal"]
    return (subject.get("answer_url") or subject.get("url")) if subject else None


def render(evt: dict[str, Any], *, format: str) -> str:
    """The exact body to send for `format` (json, slack, discord, ntfy)."""
    if format == "json":
        return json.dumps(evt, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    text, link = evt["text"], _link(evt)
    answer = evt["kind"] == "blocked" and link
    if format == "slack":
        # Slack reads <...> as links and mentions (<!channel>): card text must stay text.
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if link:
            text += f"\n<{link}|{'Answer and unblock' if answer else 'Open the card'}>"
        return json.dumps({"text": text, "unfurl_links": False})
    if format == "discord":
        if link:
            text += f"\n{'Answer and unblock' if answer else 'Open'}: <{link}>"
        # No @everyone or role pings from card text.
        return json.dumps({"content": text[:2000], "allowed_mentions": {"parse": []}})
    if format == "ntfy":
        return str(text)  # the title, tags and click-through link go in headers (see `headers`)
    raise ValueError(f"unknown format {format!r}")


def headers(evt: dict[str, Any], *, format: str) -> dict[str, str]:
    """Format-specific request headers (ntfy reads its title and link from headers)."""
    if format == "ntfy":
        found = {
            "Title": _ascii(f"kanban: {evt['kind'].replace('_', ' ')}"),
            "Tags": "warning" if evt["kind"] in _URGENT else "white_check_mark",
            "Priority": "high" if evt["kind"] in _URGENT else "default",
            "Content-Type": "text/plain; charset=utf-8",
        }
        if _link(evt):
            found["Click"] = str(_link(evt))
        return found
    return {"Content-Type": "application/json"}


_URGENT = frozenset({"blocked", "failed", "crashed", "silent", "cost_cap", "goal_blocked"})


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode()


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: `sha256=` + hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does (in constant time); docs/howto/notifications.md shows it."""
    return hmac.compare_digest(sign(secret, body), header)


def redact_url(url: str) -> str:
    """A webhook URL safe to print: scheme, host and port, the first path segment; no
    credentials, no query, no token-bearing rest of the path (Slack and Discord keep the
    secret in the path)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<malformed URL>"
    userinfo = "***@" if parts.username or parts.password else ""
    segments = [s for s in parts.path.split("/") if s]
    path = f"/{segments[0]}" if segments else ""
    hidden = "/***" if len(segments) > 1 or parts.query else ""
    return f"{parts.scheme}://{userinfo}{host}{port}{path}{hidden}"
