"""`kanban goal`: objectives that a planner breaks into cards and a judge checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kanban import clock, termtext
from kanban.cli import render
from kanban.cli._common import (
    GOAL,
    USD,
    Group,
    emit_json,
    json_option,
    pass_board,
    read_text_arg,
)


@click.group(cls=Group)
def goal_group() -> None:
    """Objectives decomposed into cards by a planner agent and checked by a judge agent.

    A goal runs in turns: its planner card writes a plan (cards with `after` links), which
    waits in triage for `kanban goal approve` (or runs at once with --auto); when all its
    cards are finished the judge card says done, or not done and why, and the next turn
    plans with that reason until --max-turns is spent. The dispatcher moves goals along.

    \b
    Example:
      kanban goal add "Add CSV export to the report page" --planner claude-code-planner \\
          --judge claude-code-judge --max-turns 3
    """


@goal_group.command("add")
@click.argument("objective")
@click.option("--planner", help="Profile whose agent plans each turn (see `kanban profiles ls`).")
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A plan of your own (JSON) for the first turn, instead of a planner's.",
)
@click.option("--judge", help="Profile whose agent judges the goal when its cards are finished.")
@click.option(
    "--max-turns",
    type=int,
    default=20,
    show_default=True,
    help="Planning turns before a goal judged not done is blocked for a person.",
)
@click.option(
    "--max-cost",
    type=USD,
    help="Budget in USD over all its cards' runs: spent, no new turn is planned.",
)
@click.option("--auto", is_flag=True, help="Run each plan at once, without `kanban goal approve`.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the new goal's id.")
@json_option
@pass_board
def add(
    board: Any,
    objective: str,
    planner: str | None,
    plan_file: Path | None,
    judge: str | None,
    max_turns: int,
    max_cost: float | None,
    auto: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Put an objective on the board; its planner card (or --plan) proposes the cards.

    A plan is checked before anything is made (a DAG, known profiles, titles); a bad one
    changes nothing. With no judge the goal is done when its cards are. OBJECTIVE '-' reads
    standard input.

    \b
    Examples:
      kanban goal add "Add CSV export" --planner claude-code-planner --judge claude-code-judge
      kanban goal add "Release 2.1" --plan release.json --auto
      kanban goal add "Greet; Say goodbye" --planner demo --judge demo --auto    # no LLM
      kanban goal add "Port the CLI to click" --planner claude-code --max-cost 20
    """

    plan = board.goals.read_plan(plan_file) if plan_file else None
    goal = board.goals.add(
        read_text_arg(objective) or "",
        planner=planner,
        plan=plan,
        judge=judge,
        max_turns=max_turns,
        auto=auto,
        max_cost_usd=max_cost,
    )
    if as_json:
        emit_json(goal)
    elif quiet:
        click.echo(goal.id)
    else:
        click.echo(f"added goal {goal.id} ({goal.status}): {_first_line(goal.objective)}")
        if goal.status == "proposed":
            click.echo(f"its plan waits in triage: kanban goal show {goal.id}; kanban goal approve")


@goal_group.command("ls")
@click.option("--status", "-s", "statuses", multiple=True, help="Only goals in this state.")
@json_option
@pass_board
def ls(board: Any, statuses: tuple[str, ...], as_json: bool) -> None:
    """List goals with their state, turn and objective.

    \b
    Example:
      kanban goal ls --status proposed
    """
    from kanban import goals

    found = board.goals.ls([goals.parse_status(s) for s in statuses] or None)
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no goals")
    for goal in found:
        click.echo(
            f"{goal.id:>5}  {render.status(f'{goal.status:<9}')}  turn {goal.turn}/"
            f"{goal.max_turns}  {_first_line(goal.objective)}"
        )


@goal_group.command()
@click.argument("goal", type=GOAL)
@json_option
@pass_board
def show(board: Any, goal: int, as_json: bool) -> None:
    """A goal's cards, turns, verdicts and progress.

    \b
    Example:
      kanban goal show 3 --json | jq '.turns[].verdict'
    """

    detail = board.goals.show(goal)
    if as_json:
        emit_json(detail)
        return
    detail = termtext.clean_view(detail)
    g = detail.goal
    progress = ", ".join(f"{n} {s}" for s, n in sorted(detail.progress.items()) if s != "total")
    lines = [
        click.style(f"goal {g.id}: {_first_line(g.objective)}", bold=True),
        f"status    {render.status(g.status)}" + (f"  ({g.reason})" if g.reason else ""),
        f"turn      {g.turn} of at most {g.max_turns}" + ("  (auto)" if g.auto else ""),
        f"planner   {g.planner or '-'}    judge {g.judge or '-'}",
        f"cards     {detail.progress.get('total', 0)} ({progress or 'none yet'})",
        f"cost      {render.cost_line(detail.spend, g.max_cost_usd, what='budget')}",
    ]
    for turn in detail.turns:
        lines.append("")
        lines.append(click.style(f"turn {turn.number}", bold=True))
        if turn.feedback:
            lines.append(f"  after: {turn.feedback}")
        if turn.planner_card:
            lines.append(f"  planner card {turn.planner_card}")
        if turn.cards:
            state = "approved" if turn.approved_at else "waiting for `kanban goal approve`"
            lines.append(f"  plan: cards {', '.join(map(str, turn.cards))} ({state})")
        if turn.judge_card:
            lines.append(f"  judge card {turn.judge_card}")
        if turn.verdict is not None:
            said = "done" if turn.verdict["done"] else "not done"
            lines.append(
                f"  verdict {said} ({clock.iso(turn.judged_at)}): {turn.verdict['reason']}"
            )
    if detail.cards:
        lines += ["", "cards:"]
        for card in detail.cards:
            role = f" [{card.role}]" if card.role else ""
            lines.append("  " + render.card_line(card) + role)
    click.echo("\n".join(lines))


@goal_group.command()
@click.argument("goal", type=GOAL)
@json_option
@pass_board
def approve(board: Any, goal: int, as_json: bool) -> None:
    """Accept the goal's proposed plan: its cards leave triage and start as they get ready.

    \b
    Example:
      kanban goal show 3 && kanban goal approve 3
    """

    moved = board.goals.approve(goal)
    if as_json:
        emit_json(moved)
    else:
        click.echo(f"goal {goal} approved: {len(moved)} card(s) on their way")
        click.echo(render.cards_table(moved))


@goal_group.command()
@click.argument("goal", type=GOAL)
@click.option("--reason", "-r", help="Why (kept on the goal and its cards).")
@json_option
@pass_board
def cancel(board: Any, goal: int, reason: str | None, as_json: bool) -> None:
    """Cancel a goal and every open card of it; running agents are stopped.

    \b
    Example:
      kanban goal cancel 3 --reason "superseded by goal 4"
    """

    done = board.goals.cancel(goal, reason=reason)
    if as_json:
        emit_json(done)
    else:
        click.echo(f"goal {done.id} is {render.status(done.status)}")


def _first_line(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= 100 else line[:99] + "…"
