"""`kanban cron`: schedules that put a card or a goal on the board at set times."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kanban import clock
from kanban.cli import render
from kanban.cli._common import Group, emit_json, json_option, pass_board, read_text_arg


@click.group(cls=Group)
def cron_group() -> None:
    """Schedules: a cron expression that puts a card or a goal on the board.

    The dispatcher fires due schedules on each tick, and wakes at the next fire time. A fire
    is recorded under a unique (schedule, time) constraint in the same transaction as what it
    creates, so restarts and several dispatchers never fire twice.

    \b
    Example:
      kanban cron add "0 9 * * 1-5" --name standup --card "Summarise yesterday's commits" \\
          --profile claude-code --tz Europe/Paris
    """


@cron_group.command("add")
@click.argument("spec")
@click.option("--name", required=True, help="A unique name (for ls, rm, pause, run).")
@click.option("--card", "title", help="Each fire adds a card with this title.")
@click.option("--profile", "-P", help="The card's profile.")
@click.option("--body", "-b", help="The card's body; '-' reads standard input.")
@click.option("--goal", "objective", help="Each fire adds a goal with this objective.")
@click.option("--planner", help="The goal's planner profile.")
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The goal's first plan (JSON), read and checked now.",
)
@click.option("--judge", help="The goal's judge profile.")
@click.option("--max-turns", type=int, default=20, show_default=True, help="The goal's turns.")
@click.option("--auto", is_flag=True, help="The goal's plans run without approval.")
@click.option("--tz", default="UTC", show_default=True, help="Time zone the expression is read in.")
@click.option(
    "--overlap",
    type=click.Choice(["skip", "allow"]),
    default="skip",
    show_default=True,
    help="skip: no new fire while the card (or goal) of an earlier fire is still open.",
)
@click.option(
    "--catch-up",
    type=click.Choice(["none", "latest", "all"]),
    default="latest",
    show_default=True,
    help="Fires missed while no dispatcher ran: drop them, fire the latest, or fire each.",
)
@json_option
@pass_board
def add(
    board: Any,
    spec: str,
    name: str,
    title: str | None,
    profile: str | None,
    body: str | None,
    objective: str | None,
    planner: str | None,
    plan_file: Path | None,
    judge: str | None,
    max_turns: int,
    auto: bool,
    tz: str,
    overlap: str,
    catch_up: str,
    as_json: bool,
) -> None:
    """Add a schedule: SPEC is a crontab expression (five fields) or @hourly, @daily...

    Fields read as in crontab(5): day of week 0 or 7 is Sunday, and a spec restricting both
    day of month and day of week fires when either matches. Titles, bodies and objectives
    may say {date}, {time} or {datetime}: the fire time in the schedule's zone.

    \b
    Examples:
      kanban cron add "0 9 * * 1-5" --name standup --card "Standup notes {date}" -P claude-code
      kanban cron add "@weekly" --name deps --goal "Update dependencies" --planner demo --auto
      kanban cron add "*/30 * * * *" --name sync --card "Sync issues" --overlap allow
    """
    from kanban import errors, goals, schedules
    from kanban.states import CatchUp, Overlap, ScheduleKind

    repo = board.settings.repo
    card_only = {"--profile": profile, "--body": body}
    goal_only = {"--planner": planner, "--plan": plan_file, "--judge": judge}
    if (title is None) == (objective is None):
        raise errors.UsageError("give --card TITLE or --goal OBJECTIVE (exactly one)")
    misplaced = [k for k, v in (goal_only if title else card_only).items() if v is not None]
    if misplaced:
        raise errors.UsageError(
            f"{', '.join(misplaced)} belong(s) to {'--goal' if title else '--card'}"
        )
    if title is not None:
        kind = ScheduleKind.CARD
        template = schedules.card_template(
            title, profile=profile, body=read_text_arg(body) or "", repo=repo
        )
    else:
        assert objective is not None
        kind = ScheduleKind.GOAL
        template = schedules.goal_template(
            objective,
            planner=planner,
            plan=goals.read_plan(plan_file, repo=repo) if plan_file else None,
            judge=judge,
            max_turns=max_turns,
            auto=auto,
            repo=repo,
        )
    state = board.schedules.add(
        spec,
        name=name,
        kind=kind,
        template=template,
        tz=tz,
        overlap=Overlap(overlap),
        catch_up=CatchUp(catch_up),
    )
    if as_json:
        emit_json(state)
    else:
        click.echo(f"schedule {name} added; next fire {_when(state.next_fire, state.schedule.tz)}")


@cron_group.command("ls")
@json_option
@pass_board
def ls(board: Any, as_json: bool) -> None:
    """List schedules with their next fire time and last fire.

    \b
    Example:
      kanban cron ls
    """

    found = board.schedules.ls()
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no schedules")
    for state in found:
        s = state.schedule
        what = s.template.get("title") if s.kind == "card" else s.template.get("objective")
        nxt = "paused" if s.paused else f"next {_when(state.next_fire, s.tz)}"
        click.echo(f"{s.name}  {s.spec!r} {s.tz}  {s.kind}: {what}")
        last = state.last_fire
        made = "-"
        if last is not None:
            made = last.skipped or (
                f"card {last.card_id}" if last.card_id else f"goal {last.goal_id}"
            )
            made = f"{_when(last.fire_at, s.tz)}: {made}"
        click.echo(f"    {nxt}; last {made}; overlap {s.overlap}, catch-up {s.catch_up}")


def _when(moment: Any, tz: str) -> str:
    if moment is None:
        return "never"
    from kanban import cron

    local = moment.astimezone(cron.zone(tz)).strftime("%Y-%m-%d %H:%M %Z")
    return f"{local} ({render.ago(moment)})"


@cron_group.command()
@click.argument("name")
@json_option
@pass_board
def rm(board: Any, name: str, as_json: bool) -> None:
    """Remove a schedule and its fire history (what it created stays on the board).

    \b
    Example:
      kanban cron rm standup
    """

    board.schedules.remove(name)
    if as_json:
        emit_json({"name": name, "removed": True})
    else:
        click.echo(f"schedule {name} removed")


@cron_group.command()
@click.argument("name")
@json_option
@pass_board
def pause(board: Any, name: str, as_json: bool) -> None:
    """Stop a schedule from firing until `kanban cron resume`.

    \b
    Example:
      kanban cron pause standup
    """

    state = board.schedules.pause(name)
    if as_json:
        emit_json(state)
    else:
        click.echo(f"schedule {name} paused")


@cron_group.command()
@click.argument("name")
@json_option
@pass_board
def resume(board: Any, name: str, as_json: bool) -> None:
    """Let a paused schedule fire again; fires missed while paused are not caught up.

    \b
    Example:
      kanban cron resume standup
    """

    state = board.schedules.pause(name, paused=False)
    if as_json:
        emit_json(state)
    else:
        click.echo(f"schedule {name} resumed ({state.spec} {state.tz})")


@cron_group.command()
@click.argument("name")
@json_option
@pass_board
def run(board: Any, name: str, as_json: bool) -> None:
    """Fire a schedule now, whatever its time, pause or overlap policy say.

    \b
    Example:
      kanban cron run standup
    """

    made = board.schedules.run_now(name)
    if as_json:
        emit_json(made)
    elif made.skipped:
        click.echo(
            f"schedule {name} fired at {clock.iso(made.fire_at)} and made nothing: {made.skipped}"
        )
    else:
        what = f"card {made.card_id}" if made.card_id else f"goal {made.goal_id}"
        click.echo(f"schedule {name} fired: {what}")
