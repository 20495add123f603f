"""What the agent sees: persona, the card, its parents' results, comments, earlier attempts,
and how to report. `kanban context CARD` prints exactly this."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from kanban import views

REPORTING = """\
## How to report

Report with this exact command (an absolute path, since your shell's PATH may not find it):
`{kanban}`

Your environment has KANBAN_CARD_ID, KANBAN_RUN_ID and KANBAN_TOKEN set; the command uses
them, so you do not need to pass ids or tokens.

- Done: commit your work, then `{kanban} complete --summary "what you did and where"`.
- Need a person: `{kanban} block --reason "the question or decision needed"`, then stop.
- Failed and a retry may help: `{kanban} fail --error "what went wrong"`.
- A note for whoever works on this next: `{kanban} comment "$KANBAN_CARD_ID" "..."`.
- Separate follow-up work: `{kanban} add "title" --parent "$KANBAN_CARD_ID" --body "..."`.

If you exit without reporting, exit code 0 counts as done and anything else as a failed
attempt; uncommitted changes are committed to the card's branch for you.
"""


def kanban_command() -> str:
    """The absolute command that runs this kanban: the console script beside this
    interpreter, else `python -m kanban`. Agents' shell tools often reset PATH (a login
    shell, a sandbox), so the prompt never relies on `kanban` being found there."""
    script = Path(sys.executable).parent / "kanban"
    if script.is_file() and os.access(script, os.X_OK):
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m kanban"


def render(
    detail: views.CardDetail,
    *,
    persona: str = "",
    branch: str | None = None,
    worktree: str | None = None,
    attempt: int | None = None,
) -> str:
    card = detail.card
    parts: list[str] = []
    if persona.strip():
        parts.append(persona.strip())
    parts.append(f"# Card {card.id}: {card.title}")
    if card.body.strip():
        parts.append(card.body.strip())
    facts = []
    if worktree:
        facts.append(
            f"- You are working in `{worktree}`" + (f" on branch `{branch}`." if branch else ".")
        )
    if card.paths:
        facts.append(f"- Keep your changes within: {', '.join(card.paths)}")
    if attempt and attempt > 1:
        facts.append(f"- This is attempt {attempt}; earlier attempts are described below.")
    if facts:
        parts.append("\n".join(facts))
    if detail.parents:
        lines = ["## Work this card builds on"]
        for parent in detail.parents:
            line = f"- Card {parent.id} ({parent.status}): {parent.title}"
            if parent.branch:
                line += f" [branch `{parent.branch}`, already merged into yours]"
            lines.append(line)
            if parent.summary:
                lines.append(_indent(parent.summary))
        parts.append("\n".join(lines))
    if detail.comments:
        lines = ["## Comments"]
        for note in detail.comments:
            lines.append(f"- {note.author or 'someone'}: {note.body.strip()}")
        parts.append("\n".join(lines))
    failed = [r for r in detail.runs if r.outcome not in (None, "done") and (r.error or r.summary)]
    if failed:
        lines = ["## Earlier attempts"]
        for run in failed[-5:]:
            said = (run.error or run.summary or "").strip()[:2000]
            lines.append(f"- Attempt {run.attempt} ended {run.outcome}: {said}")
        parts.append("\n".join(lines))
    parts.append(REPORTING.format(kanban=kanban_command()))
    return "\n\n".join(parts).rstrip() + "\n"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.strip().splitlines())


def render_resume(detail: views.CardDetail, *, since: views.RunView) -> str:
    """The next message to an agent whose own session is resumed: what changed since its
    run `since` ended (a person's answer, a reviewer's note), and how to report. The rest
    of the card it already has, in its own conversation."""
    card = detail.card
    ended = f"ended {since.outcome}" + (f": {since.error.strip()[:2000]}" if since.error else "")
    parts = [f"# Card {card.id}: {card.title} (back to you)"]
    parts.append(
        f"Your attempt {since.attempt} {ended}. The card is yours again; go on from there."
    )
    new = [n for n in detail.comments if since.ended_at is None or n.at >= since.ended_at]
    if new:
        lines = ["## New since then"]
        for note in new:
            lines.append(f"- {note.author or 'someone'}: {note.body.strip()}")
        parts.append("\n".join(lines))
    parts.append(REPORTING.format(kanban=kanban_command()))
    return "\n\n".join(parts).rstrip() + "\n"
