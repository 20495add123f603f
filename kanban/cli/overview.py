"""Commands that draw the whole board: `board` (once or live with --watch) and `graph`.

`board` and `ls` read the same cards with the same filters: every card but archived ones
(`--all` adds those). The finished columns (done, failed, cancelled, archived) show their most
recent cards only (`--finished N`), and their headers count them all, as `ls` would.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import click

from kanban import views
from kanban.cli._common import CARD, DURATION, emit_json, json_option, pass_board

OPEN_COLUMNS = ("triage", "todo", "ready", "running", "review", "blocked")
FINISHED_COLUMNS = ("done", "failed", "cancelled", "archived")
ALWAYS = ("todo", "ready", "running", "done")  # drawn even when empty
MAX_ROWS = 40  # an open column deeper than this says how many more


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    name: str
    total: int
    shown: tuple[views.CardView, ...]

    @property
    def hidden(self) -> int:
        return self.total - len(self.shown)


def columns(cards: Sequence[views.CardView], *, finished: int) -> list[Column]:
    """Cards grouped by state; finished columns keep their `finished` most recent cards."""
    grouped: dict[str, list[views.CardView]] = {c: [] for c in OPEN_COLUMNS + FINISHED_COLUMNS}
    for card in cards:
        grouped.setdefault(card.status, []).append(card)
    out = []
    for name, items in grouped.items():
        if not items and name not in ALWAYS:
            continue
        if name in FINISHED_COLUMNS:
            recent = sorted(items, key=lambda c: (c.updated_at or c.created_at, c.id), reverse=True)
            shown = recent[:finished]
        else:
            shown = items[:MAX_ROWS]
        out.append(Column(name=name, total=len(items), shown=tuple(shown)))
    return out


def table(cols: Sequence[Column]) -> Any:
    from rich.table import Table
    from rich.text import Text

    grid = Table(show_lines=False, expand=True)
    for col in cols:
        grid.add_column(f"{col.name} ({col.total})", overflow="fold")
    depth = max((len(c.shown) + (1 if c.hidden else 0) for c in cols), default=0)
    for i in range(depth):
        row: list[Any] = []
        for col in cols:
            if i < len(col.shown):
                row.append(Text(f"{col.shown[i].id} {col.shown[i].title}"))
            elif i == len(col.shown) and col.hidden:
                row.append(Text(f"... {col.hidden} more (kanban ls -s {col.name})", style="dim"))
            else:
                row.append("")
        grid.add_row(*row)
    return grid


def _filters(fn: Any) -> Any:
    for option in reversed(
        [
            click.option("--status", "-s", "statuses", multiple=True, help="Only cards in this "
                         "state (repeat for several)."),
            click.option("--profile", "-P", help="Only cards for this profile."),
            click.option("--parent", type=CARD, help="Only children of this card."),
            click.option("--search", help="Only cards whose title or body contains this text."),
            click.option("--all", "include_archived", is_flag=True,
                         help="Include archived cards."),
        ]
    ):  # fmt: skip
        fn = option(fn)
    return fn


@click.command("board")
@_filters
@click.option(
    "--finished",
    type=click.IntRange(0, 1000),
    default=10,
    show_default=True,
    help="Cards shown per finished column (done, failed, cancelled), most recent first.",
)
@click.option("--watch", "-w", is_flag=True, help="Keep redrawing it live until Ctrl-C.")
@click.option("--every", type=DURATION, default="2s", show_default=True, help="With --watch.")
@json_option
@pass_board
def board_cmd(
    board: Any,
    statuses: tuple[str, ...],
    profile: str | None,
    parent: int | None,
    search: str | None,
    include_archived: bool,
    finished: int,
    watch: bool,
    every: str,
    as_json: bool,
) -> None:
    """Show the board as columns, one per state (live with --watch).

    It shows the cards `kanban ls` lists, with the same filters: every card but archived
    ones. The finished columns show their --finished most recent cards and count them all.

    \b
    Examples:
      kanban board
      kanban board --watch --profile claude-code --finished 5
    """
    from rich.console import Console

    from kanban import clock

    def draw() -> Any:
        cards = board.cards(
            list(statuses) or None,
            profile=profile,
            parent=parent,
            search=search,
            include_archived=include_archived,
        )
        return columns(cards, finished=finished)

    if as_json:
        if watch:
            from kanban import errors

            raise errors.UsageError("--watch draws for a terminal; drop it to use --json")
        emit_json(
            {c.name: {"total": c.total, "cards": [x.to_json() for x in c.shown]} for c in draw()}
        )
        return
    console = Console()
    if not watch:
        console.print(table(draw()))
        return
    pause = clock.parse_duration(every, what="--every")
    _watch(console, lambda: table(draw()), pause)


def _watch(console: Any, frame: Any, pause: float) -> None:
    """Redraw in place on a terminal (rich Live); elsewhere print one frame per interval."""
    from rich.live import Live

    try:
        if console.is_terminal:
            with Live(frame(), console=console, auto_refresh=False, screen=False) as live:
                while True:
                    time.sleep(pause)
                    live.update(frame(), refresh=True)
        while True:
            console.print(frame())
            time.sleep(pause)
    except KeyboardInterrupt:
        return


@click.command()
@click.argument("card", type=CARD, required=False)
@click.option("--all", "include_archived", is_flag=True, help="Include archived cards.")
@json_option
@pass_board
def graph(board: Any, card: int | None, include_archived: bool, as_json: bool) -> None:
    """Print the dependency graph as an indented tree, parents above their children.

    A card with several parents appears under each of them; after the first time it is
    marked `(above)` and not expanded again. With CARD, only the cards it waits for and the
    cards that wait for it.

    \b
    Examples:
      kanban graph
      kanban graph 12 --json | jq '.edges'
    """
    cards = board.cards(include_archived=include_archived)
    if card is not None:
        board.get(card)  # an unknown card is an error, not an empty graph
        cards = connected(cards, card)
    if as_json:
        shown = {c.id for c in cards}
        emit_json(
            {
                "nodes": [
                    {"id": c.id, "title": c.title, "status": c.status, "parents": c.parents}
                    for c in cards
                ],
                "edges": [[p, c.id] for c in cards for p in c.parents if p in shown],
            }
        )
        return
    click.echo("\n".join(tree_lines(cards)) or "no cards")


def connected(cards: Sequence[views.CardView], card_id: int) -> list[views.CardView]:
    """`card_id` with every ancestor and descendant."""
    by_id = {c.id: c for c in cards}
    children: dict[int, list[int]] = {}
    for c in cards:
        for p in c.parents:
            children.setdefault(p, []).append(c.id)
    keep = {card_id}
    for step in (lambda i: by_id[i].parents if i in by_id else (), lambda i: children.get(i, [])):
        stack = [card_id]
        while stack:
            for nxt in step(stack.pop()):
                if nxt not in keep:
                    keep.add(nxt)
                    stack.append(nxt)
    return [c for c in cards if c.id in keep]


def tree_lines(cards: Sequence[views.CardView]) -> list[str]:
    """The graph as text: roots first, each child under its parents (`(above)` when seen)."""
    by_id = {c.id: c for c in cards}
    children: dict[int, list[int]] = {}
    for c in cards:
        for p in c.parents:
            if p in by_id:
                children.setdefault(p, []).append(c.id)
    roots = [c.id for c in cards if not any(p in by_id for p in c.parents)]
    seen: set[int] = set()
    lines: list[str] = []

    def label(card_id: int) -> str:
        c = by_id[card_id]
        return f"{c.id} [{c.status}] {c.title}"

    def walk(card_id: int, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└── " if last else "├── ")
        if card_id in seen:
            lines.append(f"{prefix}{branch}{label(card_id)} (above)")
            return
        seen.add(card_id)
        lines.append(f"{prefix}{branch}{label(card_id)}")
        below = sorted(children.get(card_id, []))
        inner = prefix if top else prefix + ("    " if last else "│   ")
        for i, child in enumerate(below):
            walk(child, inner, i == len(below) - 1, False)

    for root in roots:
        walk(root, "", True, True)
    return lines


COMMANDS = [board_cmd, graph]
