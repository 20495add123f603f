"""What an agent may do to the board, applied by its supervisor with the run's token.

`RunVerbs(board, card_id, run_id, token)` is the handler behind the run's socket
(kanban.channel): every verb acts on the run's own card only, writes through `api.Board` (and
so through the board verbs), and checks its arguments first: text bounded, a block's kind
from a known list, metadata a JSON object, at most MAX_CHILDREN cards added per run.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from kanban import api, board, clock, errors
from kanban.channel import BLOCK_KINDS, MAX_CHILDREN, MAX_TEXT, Refused


@dataclasses.dataclass
class RunVerbs:
    board: api.Board
    card_id: int
    run_id: int
    token: str
    note: Callable[[str], None] = lambda text: None
    on_end: Callable[[str], None] = lambda outcome: None
    children: int = 0

    @property
    def actor(self) -> str:
        return f"agent:run-{self.run_id}"

    def __call__(self, verb: str, args: dict[str, Any]) -> Any:
        method = getattr(self, f"do_{verb}")
        return method(**args)

    # ------------------------------------------------------------------ reads

    def do_show(self) -> dict[str, Any]:
        """The card, its parents (with their summaries), children, runs, events, comments;
        a goal's planner or judge also gets its goal."""
        detail = self.board.show(self.card_id)
        shown: dict[str, Any] = detail.to_json()
        if detail.card.goal_id is not None:
            shown["goal"] = self.board.goals.show(detail.card.goal_id).to_json()
        return shown

    # ------------------------------------------------------------------ ends of the run

    def do_complete(
        self, summary: str | None = None, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        summary = _text(summary, "summary", required=False)
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise Refused('metadata must be a JSON object, like {"tests": 12}')
            if len(json.dumps(metadata)) > MAX_TEXT:
                raise Refused(f"metadata over {MAX_TEXT // 1024} KiB of JSON refused")
            self._event("agent_metadata", {"metadata": metadata})
        card = self.board.complete(self.card_id, token=self.token, summary=summary)
        self.on_end("done")
        return card.to_json()

    def do_block(self, reason: str, kind: str = "needs_input") -> dict[str, Any]:
        reason = _text(reason, "reason")
        if kind not in BLOCK_KINDS:
            raise Refused(f"unknown kind {kind!r}: use one of {', '.join(BLOCK_KINDS)}")
        if kind == "transient":  # worth another try later: a failed attempt, retried
            card = self.board.fail(self.card_id, error=f"transient: {reason}", token=self.token)
            self.on_end("failed")
        else:
            # A question for a person reads as asked; other kinds say what kind they are.
            text = reason if kind == "needs_input" else f"{kind}: {reason}"
            card = self.board.block(self.card_id, reason=text, token=self.token)
            self.on_end("blocked")
        return card.to_json()

    def do_fail(self, error: str) -> dict[str, Any]:
        card = self.board.fail(self.card_id, error=_text(error, "error"), token=self.token)
        self.on_end("failed")
        return card.to_json()

    # ------------------------------------------------------------------ while running

    def do_comment(self, body: str) -> dict[str, Any]:
        body = _text(body, "comment")
        self._live()
        return self.board.comment(self.card_id, body, author=self.actor).to_json()

    def do_add(
        self,
        title: str,
        body: str | None = None,
        profile: str | None = None,
        parents: list[int] | None = None,
    ) -> dict[str, Any]:
        title = _text(title, "title")
        if parents and any(p != self.card_id for p in parents):
            raise Refused(
                f"an agent adds cards after its own card ({self.card_id}) only; "
                f"parents {parents} refused"
            )
        if self.children >= MAX_CHILDREN:
            raise Refused(f"this run already added {MAX_CHILDREN} cards; no more")
        self._live()
        own = self.board.get(self.card_id)
        child = self.board.add(
            title,
            body=_text(body, "body", required=False) or "",
            profile=profile or own.profile,
            parents=[self.card_id],
        )
        self.children += 1
        self.note(f"the agent added card {child.id}: {title[:80]!r}")
        return child.to_json()

    def do_heartbeat(self, note: str | None = None) -> dict[str, Any]:
        note = _text(note, "note", required=False)
        if note:
            self._event("agent_note", {"note": note})
            self.note(f"agent: {note[:500]}")
        run = self.board.heartbeat(self.card_id, token=self.token)
        return {"lease_expires_at": clock.iso(run.lease_expires_at), "note": note}

    # ------------------------------------------------------------------ pieces

    def _live(self) -> None:
        """LeaseLost unless the run is still current (the lease is renewed on the way)."""
        self.board.heartbeat(self.card_id, token=self.token)

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        ttl = self.board.settings.lease_ttl
        self.board.tx.write(
            lambda c: board.agent.record(
                c,
                card_id=self.card_id,
                token=self.token,
                kind=kind,
                now=clock.now(),
                ttl=ttl,
                actor=self.actor,
                data=data,
            )
        )


def _text(value: Any, what: str, *, required: bool = True) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise Refused(f"give a {what}: it may not be empty")
        return None
    if not isinstance(value, str):
        raise Refused(f"the {what} must be text")
    if len(value) > MAX_TEXT:
        raise Refused(f"the {what} is over {MAX_TEXT} characters; shorten it")
    return value


__all__ = ["RunVerbs", "errors"]
