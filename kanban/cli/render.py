"""Text output for people. JSON output goes through `_common.emit_json` instead."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from kanban import clock, views

if TYPE_CHECKING:
    from rich.table import Table

STATUS_COLOURS = {
    "triage": "magenta",
    "todo": "white",
    "ready": "cyan",
    "running": "yellow",
    "review": "blue",
    "blocked": "red",
    "done": "green",
    "failed": "red",
    "cancelled": "bright_black",
    "archived": "bright_black",
}


def status(text: str) -> str:
    return click.style(text, fg=STATUS_COLOURS.get(text))


def ago(when: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if when is None:
        return "-"
    delta = ((now or clock.now()) - when).total_seconds()
    if delta < 0:
        return f"in {clock.human(-delta)}"
    return f"{clock.human(delta)} ago"


def card_line(card: views.CardView) -> str:
    parts = [f"{card.id:>5}", status(f"{card.status:<9}"), card.title]
    if card.profile:
        parts.append(click.style(f"[{card.profile}]", fg="bright_black"))
    if card.parents:
        parts.append(click.style("after " + ",".join(map(str, card.parents)), fg="bright_black"))
    return "  ".join(parts)


def cards_table(cards: Sequence[views.CardView]) -> str:
    if not cards:
        return "no cards"
    return "\n".join(card_line(c) for c in cards)


def run_line(run: views.RunView, now: dt.datetime | None = None) -> str:
    state = run.outcome or "live"
    bits = [
        f"run {run.id}",
        f"attempt {run.attempt} (budget {run.max_attempts})",
        state,
        f"on {run.host}",
    ]
    if run.pid:
        bits.append(f"pid {run.pid}")
    if run.outcome is None:
        bits.append(f"heartbeat {ago(run.heartbeat_at, now)}")
    else:
        bits.append(f"ended {ago(run.ended_at, now)}")
    if run.exit_code is not None:
        bits.append(f"exit {run.exit_code}")
    if run.tokens_in is not None or run.tokens_out is not None or run.cost_usd is not None:
        bits.append(usage(run.tokens_in, run.tokens_out, run.cost_usd))
    if run.model:
        bits.append(f"model {run.model}")
    if run.session_id:
        bits.append(f"session {run.session_id}")
    line = "  ".join(bits)
    if run.error:
        line += f"\n        error: {run.error.splitlines()[0] if run.error.strip() else run.error}"
    if run.summary:
        line += f"\n        summary: {run.summary.splitlines()[0]}"
    return line


def detail(d: views.CardDetail) -> str:
    c = d.card
    lines = [
        click.style(f"#{c.id} {c.title}", bold=True),
        f"status    {status(c.status)}" + (f"  ({c.reason})" if c.reason else ""),
        f"profile   {c.profile or '-'}    priority {c.priority}    attempts spent {c.attempts}",
    ]
    if c.not_before and c.status == "ready":
        lines.append(f"backoff   not before {clock.iso(c.not_before)} ({ago(c.not_before)})")
    if c.paths:
        lines.append(f"paths     {', '.join(c.paths)}")
    if c.model or c.agent_args or c.agent_env:
        chosen = [f"model {c.model}"] if c.model else []
        chosen += list(c.agent_args) + [f"{k}=…" for k in sorted(c.agent_env)]
        lines.append(f"agent     {'  '.join(chosen)}")
    if c.branch:
        lines.append(f"branch    {c.branch}")
    if c.summary:
        lines.append(f"summary   {c.summary}")
    if c.max_cost_usd is not None or any(r.cost_usd is not None for r in d.runs):
        lines.append(f"cost      {cost_line(spend_of(d.runs), c.max_cost_usd)}")
    if c.body:
        lines += ["", c.body]
    if d.parents:
        lines += ["", "parents:"] + ["  " + card_line(p) for p in d.parents]
    if d.children:
        lines += ["", "children:"] + ["  " + card_line(p) for p in d.children]
    if d.runs:
        lines += ["", "runs:"] + ["  " + run_line(r) for r in d.runs]
    if d.comments:
        lines += ["", "comments:"]
        lines += [f"  {ago(m.at)} {m.author or '?'}: {m.body}" for m in d.comments]
    if d.events:
        lines += ["", "history:"]
        for e in d.events[-15:]:
            extra = ""
            if e.data:
                shown = {k: v for k, v in e.data.items() if v not in (None, [], "")}
                extra = " " + " ".join(f"{k}={v}" for k, v in shown.items())
            lines.append(f"  {clock.iso(e.at)}  {e.kind:<10} {e.actor or ''}{extra}")
    return "\n".join(lines)


def tokens(count: int | None) -> str:
    if count is None:
        return "?"
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f}M"
    if count >= 10_000:
        return f"{count / 1000:.0f}k"
    return f"{count:,}"


def usage(tokens_in: int | None, tokens_out: int | None, cost_usd: float | None) -> str:
    """`12k in / 1,204 out  $0.42`: what one run (or a set of runs) used."""
    parts = []
    if tokens_in is not None or tokens_out is not None:
        parts.append(f"{tokens(tokens_in)} in / {tokens(tokens_out)} out")
    if cost_usd is not None:
        parts.append(views.usd(cost_usd))
    return "  ".join(parts) or "usage not reported"


def spend_of(runs: Sequence[views.RunView]) -> views.Spend:
    costed = [r.cost_usd for r in runs if r.cost_usd is not None]
    return views.Spend(
        runs=len(runs),
        reported=len(costed),
        tokens_in=sum(r.tokens_in or 0 for r in runs),
        tokens_out=sum(r.tokens_out or 0 for r in runs),
        cost_usd=sum(costed),
    )


def cost_line(spent: views.Spend, cap: float | None, *, what: str = "cap") -> str:
    """`$1.20 of $3.00 cap  (3 runs, 2 reported cost; 120k in / 4,210 out)`."""
    text = views.usd(spent.cost_usd) + (f" of {views.usd(cap)} {what}" if cap else "")
    detail = f"{spent.runs} run{'s' if spent.runs != 1 else ''}"
    if spent.reported != spent.runs:
        detail += f", {spent.reported} reported cost"
    if spent.tokens_in or spent.tokens_out:
        detail += f"; {usage(spent.tokens_in, spent.tokens_out, None)}"
    return f"{text}  ({detail})"


def demo_view(board: object | None) -> Table:
    """A rich renderable: the demo board's columns and its running agents."""
    from rich.table import Table

    table = Table(title="kanban demo", expand=True)
    columns = ("todo", "ready", "running", "done")
    for col in columns:
        table.add_column(col, overflow="fold")
    if board is None:
        table.add_row("", "", "", "")
        return table
    cards = board.cards()  # type: ignore[attr-defined]
    grouped: dict[str, list[str]] = {c: [] for c in columns}
    for card in cards:
        label = f"{card.id} {card.title}"
        if card.attempts:
            label += f" (retry {card.attempts})"
        if card.status in grouped:
            grouped[card.status].append(label)
    depth = max(len(v) for v in grouped.values())
    for i in range(depth):
        table.add_row(*[grouped[c][i] if i < len(grouped[c]) else "" for c in columns])
    return table
