"""Commands for operators: status, why, runs, logs, context, gc, merge."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from kanban import clock, errors
from kanban.cli import render
from kanban.cli._common import CARD, emit_json, json_option, pass_board


@click.command()
@json_option
@pass_board
def status(board: Any, as_json: bool) -> None:
    """How the board is doing: dispatchers, cards per state, running runs, the oldest waiter,
    and what the agents used (tokens and cost, all time and the last 24 hours).

    \b
    Example:
      kanban status
    """
    from kanban import board as verbs
    from kanban import profiles, why

    summary = board.status()
    alive, liveness = why.dispatcher_liveness(board, summary.now)
    _good, broken = profiles.load_all(repo=board.settings.repo)
    if as_json:
        data = summary.to_json()
        data["dispatcher_alive"] = alive
        data["broken_profiles"] = broken
        data["dispatchers"] = [
            {k: clock.iso(v) if hasattr(v, "isoformat") else v for k, v in row.items()}
            for row in board.tx.read(verbs.list_dispatchers)
        ]
        emit_json(data)
        return
    click.echo(liveness if alive else click.style(liveness, fg="red"))
    for name, problem in sorted(broken.items()):  # its cards wait; the others run
        click.echo(click.style(f"profile {name} does not load: {problem}", fg="red"))
    counts = "  ".join(
        f"{render.status(name)} {count}" for name, count in summary.counts.items() if count
    )
    click.echo(f"cards: {counts or 'none'}")
    if summary.oldest_ready_at is not None:
        click.echo(
            f"ready: {summary.ready_waiting} claimable now, oldest waiting "
            f"{clock.human((summary.now - summary.oldest_ready_at).total_seconds())}"
        )
    if summary.spend.runs:
        click.echo(f"usage: {render.cost_line(summary.spend, None)}")
        click.echo(f"  last 24 h: {render.cost_line(summary.spend_24h, None)}")
    if summary.running:
        click.echo(f"running ({len(summary.running)}):")
        for run in summary.running:
            click.echo(f"  card {run.card_id:>5}  {render.run_line(run, summary.now)}")


@click.command()
@click.argument("card", type=CARD)
@json_option
@pass_board
def why(board: Any, card: int, as_json: bool) -> None:
    """Say why a card is not running: its parents, a backoff, capacity, overlapping paths,
    its profile, or no dispatcher. Uses the dispatcher's own planning, so it tells the truth.

    \b
    Example:
      kanban why 12
    """
    from kanban import why as why_mod

    reasons = why_mod.explain(board, card)
    if as_json:
        emit_json({"card": card, "reasons": reasons})
    else:
        for reason in reasons:
            click.echo(f"- {reason}")


@click.command()
@click.argument("card", type=CARD)
@json_option
@pass_board
def runs(board: Any, card: int, as_json: bool) -> None:
    """List every run of a card: attempt, host, pid, outcome, exit code, usage, error, log.

    \b
    Example:
      kanban runs 12 --json
    """
    found = board.runs(card)
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo(f"card {card} has not run yet (see `kanban why {card}`)")
    for run in found:
        click.echo(render.run_line(run))
        if run.log_path:
            click.echo(f"        log: {run.log_path}")


@click.command()
@click.argument("card", type=CARD)
@click.option("--run", "run_id", type=int, help="A particular run (default: the latest).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing while the run is live.")
@pass_board
def logs(board: Any, card: int, run_id: int | None, follow: bool) -> None:
    """Print a run's log: the agent's output and the supervisor's notes (`[kanban]` lines).

    \b
    Examples:
      kanban logs 12
      kanban logs 12 -f
    """
    from kanban import board as verbs

    found = board.runs(card)
    if run_id is not None:
        found = [r for r in found if r.id == run_id]
    if not found:
        raise errors.UsageError(f"card {card} has no run{f' {run_id}' if run_id else ''} yet")
    run = found[-1]
    path = (
        Path(run.log_path)
        if run.log_path
        else board.settings.log_dir / f"card-{card}-run-{run.id}.log"
    )
    offset = 0
    while True:
        if path.exists():
            with path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
                offset += len(chunk)
            if chunk:
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
        if not follow:
            break
        current = board.tx.read(lambda c: verbs.get_run(c, run.id))
        ended = current is None or current.outcome is not None
        if ended and path.exists() and path.stat().st_size == offset:
            break
        time.sleep(0.2)
    if not path.exists():
        click.echo(f"no log yet at {path}", err=True)


@click.command()
@click.argument("card", type=CARD)
@pass_board
def context(board: Any, card: int) -> None:
    """Print the prompt the agent gets for this card: persona, card, parents' summaries and
    branches, comments, earlier attempts, and how to report.

    \b
    Example:
      kanban context 12 | less
    """
    from kanban import profiles, prompt
    from kanban.worktrees import slug

    detail = board.show(card)
    persona = ""
    if detail.card.profile:
        try:
            persona = profiles.load(detail.card.profile, repo=board.settings.repo).persona
        except errors.ProfileError as exc:
            click.echo(f"(profile: {exc.message})", err=True)
    name = f"{card}-{slug(detail.card.title)}"
    attempt = detail.card.attempts + 1
    click.echo(
        prompt.render(
            detail,
            persona=persona,
            branch=f"kanban/{name}",
            worktree=str(board.settings.worktrees / name),
            attempt=attempt,
        ),
        nl=False,
    )


@click.command()
@click.option("--dry-run", is_flag=True, help="Say what would be removed, remove nothing.")
@json_option
@pass_board
def gc(board: Any, dry_run: bool, as_json: bool) -> None:
    """Remove the worktrees of finished cards that are clean (their branches stay).

    A worktree with uncommitted changes is never removed; it is listed so you can look.

    \b
    Example:
      kanban gc --dry-run
    """
    from kanban import maintenance

    report = maintenance.gc(board, dry_run=dry_run)
    if as_json:
        emit_json(report)
        return
    verb = "would remove" if dry_run else "removed"
    for path in report["removed"]:
        click.echo(f"{verb} {path}")
    for path, why in report["kept"].items():
        click.echo(f"kept {path}: {why}")
    if not report["removed"] and not report["kept"]:
        click.echo("nothing to clean up")


@click.command()
@click.argument("cards", type=CARD, nargs=-1)
@click.option("--into", "target", help="Target branch (default: the board's base branch).")
@json_option
@pass_board
def merge(board: Any, cards: tuple[int, ...], target: str | None, as_json: bool) -> None:
    """Merge finished cards' branches into a target branch, parents first.

    With no CARDs, every done card whose branch is not merged yet. Stops cleanly at the first
    conflict (nothing half-merged is left) and names the branch and the files.

    \b
    Examples:
      kanban merge --into main
      kanban merge 12 15 --into release
    """
    from kanban import maintenance

    report = maintenance.merge(board, cards=list(cards) or None, target=target)
    if as_json:
        emit_json(report)
    else:
        for branch in report["merged"]:
            click.echo(f"merged {branch} into {report['target']}")
        if report["already"]:
            click.echo(f"already in {report['target']}: {', '.join(report['already'])}")
        if report["conflict"]:
            click.echo(
                f"stopped: {report['conflict']} conflicts with {report['target']} in "
                f"{', '.join(report['conflict_files']) or 'unknown files'}; merge it by hand",
                err=True,
            )
    if report["conflict"]:
        sys.exit(1)


COMMANDS = [status, why, runs, logs, context, gc, merge]
