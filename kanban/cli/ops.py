"""Commands for operators: status, why, runs, logs, context, gc, merge."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from kanban import clock, errors, termtext
from kanban.cli import render
from kanban.cli._common import CARD, RUN, emit_json, json_option, pass_board


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
    from kanban import health

    report = health.report(board)
    if as_json:
        emit_json(report.to_json())
        return
    summary = report.summary
    click.echo(report.liveness if report.alive else click.style(report.liveness, fg="red"))
    for warning in report.clock_warnings:
        click.echo(click.style(warning, fg="yellow"))
    for name, problem in sorted(report.broken_profiles.items()):  # its cards wait; others run
        click.echo(click.style(f"profile {name} does not load: {problem}", fg="red"))
    counts = "  ".join(
        f"{render.status(name)} {count}" for name, count in summary.counts.items() if count
    )
    click.echo(f"cards: {counts or 'none'}")
    if summary.oldest_ready_at is not None:
        click.echo(
            f"ready: {summary.ready_waiting} claimable now, oldest waiting "
            f"{clock.human((report.now - summary.oldest_ready_at).total_seconds())}"
        )
    if summary.spend.runs:
        click.echo(f"usage: {render.cost_line(summary.spend, None)}")
        click.echo(f"  last 24 h: {render.cost_line(summary.spend_24h, None)}")
    _notifications_line(report.notifications)
    if summary.running:
        click.echo(f"running ({len(summary.running)}):")
        for run in summary.running:
            click.echo(f"  card {run.card_id:>5}  {render.run_line(run, report.now)}")


def _notifications_line(counts: Mapping[str, int]) -> None:
    if counts["dead"]:
        click.echo(
            click.style(
                f"notifications: {counts['dead']} dead (gave up), {counts['pending']} pending; "
                "see `kanban notify log --dead`",
                fg="red",
            )
        )
    elif counts["pending"]:
        click.echo(f"notifications: {counts['pending']} pending")


@click.command()
@click.argument("card", type=CARD, required=False)
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="Without CARD: explain at most this many cards.",
)
@json_option
@pass_board
def why(board: Any, card: int | None, limit: int, as_json: bool) -> None:
    """Say why a card is not running: its parents, a backoff, capacity, overlapping paths,
    its profile, or no dispatcher. Uses the dispatcher's own planning, so it tells the truth.

    Without CARD, it explains every card that is ready but not running, needs a person
    (blocked, review, triage), or waits for a parent that needs one.

    \b
    Examples:
      kanban why 12
      kanban why
    """
    from kanban import why as why_mod

    if card is None:
        _why_all(board, limit=limit, as_json=as_json)
        return

    reasons = why_mod.explain(board, card)
    if as_json:
        emit_json({"card": card, "reasons": reasons})
    else:
        for reason in reasons:
            click.echo(f"- {termtext.clean(reason)}")


def _why_all(board: Any, *, limit: int, as_json: bool) -> None:
    from kanban import stuck

    found, total = stuck.explain_all(board, limit=limit)
    if as_json:
        emit_json(
            [{"card": s.card.id, "status": s.card.status, "title": s.card.title,
              "reasons": list(s.reasons)} for s in found]
        )  # fmt: skip
        return
    if not found:
        click.echo("no card is waiting: every card is running, done, or waits for parents at work")
    for item in found:
        click.echo(f"card {item.card.id} ({render.status(item.card.status)}): {item.card.title}")
        for reason in item.reasons:
            click.echo(f"  - {reason}")
    if total > len(found):
        click.echo(f"... and {total - len(found)} more (--limit {total})")


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
@click.option("--run", "run_id", type=RUN, help="A particular run (default: the latest).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing while the run is live.")
@json_option
@pass_board
def logs(board: Any, card: int, run_id: int | None, follow: bool, as_json: bool) -> None:
    """Print a run's log: the agent's output and the supervisor's notes (`[kanban]` lines).

    --json prints the log once as an object (card, run, path, text); it does not follow.

    \b
    Examples:
      kanban logs 12
      kanban logs 12 -f
      kanban logs 12 --json | jq -r .text
    """
    from kanban import board as verbs

    if as_json and follow:
        raise errors.UsageError("--json prints the whole log once; drop -f to use it")

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
    if as_json:
        text = path.read_bytes().decode(errors="replace") if path.exists() else None
        emit_json({"card": card, "run": run.id, "path": str(path), "text": text})
        return
    offset = 0
    while True:
        if path.exists():
            with path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
                offset += len(chunk)
            if chunk:
                sys.stdout.write(termtext.clean(chunk.decode(errors="replace")))
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
@json_option
@pass_board
def context(board: Any, card: int, as_json: bool) -> None:
    """Print the prompt the agent gets for this card: persona, card, parents' summaries and
    branches, comments, earlier attempts, and how to report.

    \b
    Examples:
      kanban context 12 | less
      kanban context 12 --json | jq -r .prompt
    """
    from kanban import board as board_mod
    from kanban import profiles, prompt
    from kanban.worktrees import card_names

    detail = board.show(card)
    persona = ""
    if detail.card.profile:
        try:
            persona = profiles.load(detail.card.profile, repo=board.settings.repo).persona
        except errors.ProfileError as exc:
            click.echo(f"(profile: {exc.message})", err=True)
    path, branch = card_names(
        board.settings.worktrees,
        card_id=card,
        title=detail.card.title,
        board_id=board.tx.read(board_mod.releases.board_id),
    )
    if detail.card.branch:
        branch = detail.card.branch
    attempt = detail.card.attempts + 1
    worktree = str(path)
    text = prompt.render(detail, persona=persona, branch=branch, worktree=worktree, attempt=attempt)
    if as_json:
        emit_json(
            {
                "card": card,
                "attempt": attempt,
                "branch": branch,
                "worktree": worktree,
                "prompt": text,
            }
        )
    else:
        click.echo(text, nl=False)


@click.command()
@click.option("--dry-run", is_flag=True, help="Say what would be removed, remove nothing.")
@click.option(
    "--branches",
    is_flag=True,
    help="Also delete the branches of finished cards already merged into the base branch.",
)
@json_option
@pass_board
def gc(board: Any, dry_run: bool, branches: bool, as_json: bool) -> None:
    """Remove the worktrees of finished cards that are clean (their branches stay).

    A worktree with uncommitted changes is never removed; it is listed so you can look.
    The pool of finished worktrees kept for reuse (setting reuse_worktrees) is emptied too.
    With --branches, also delete the `kanban/*` branches of finished cards whose commits are
    all in the base branch (after `kanban merge`); an unmerged one is kept and listed.

    \b
    Examples:
      kanban gc --dry-run
      kanban merge && kanban gc --branches
    """
    from kanban import maintenance

    report = maintenance.gc(board, dry_run=dry_run, branches=branches)
    if as_json:
        emit_json(report)
        return
    verb = "would remove" if dry_run else "removed"
    for path in report["removed"]:
        click.echo(f"{verb} {path}")
    for path in report.get("pool_removed", []):
        click.echo(f"{verb} pooled worktree {path}")
    for path, why in report["kept"].items():
        click.echo(f"kept {path}: {why}")
    for branch in report.get("branches_removed", []):
        click.echo(f"{verb} branch {branch} (merged into {report['base']})")
    for branch, why in report.get("branches_kept", {}).items():
        click.echo(f"kept branch {branch}: {why}")
    shown = ("removed", "pool_removed", "kept", "branches_removed", "branches_kept")
    if not any(report.get(k) for k in shown):
        click.echo("nothing to clean up")


@click.command()
@click.argument("cards", type=CARD, nargs=-1)
@click.option("--into", "target", help="Target branch (default: the board's base branch).")
@click.option("--dry-run", is_flag=True, help="Say what would merge or conflict; change nothing.")
@json_option
@pass_board
def merge(
    board: Any, cards: tuple[int, ...], target: str | None, dry_run: bool, as_json: bool
) -> None:
    """Merge finished cards' branches into the base branch (recorded at `kanban init`),
    parents first, whatever is checked out.

    With no CARDs, every done card whose branch is not merged yet. A branch the target can
    fast-forward to makes no merge commit, so a linear chain of cards stays linear. Stops
    cleanly at the first conflict (nothing half-merged is left), names both branches and
    the files, and prints the commands that resolve it. --dry-run computes the same merges
    without touching any branch, index or worktree.

    \b
    Examples:
      kanban merge --dry-run
      kanban merge
      kanban merge 12 15 --into release
    """
    from kanban import maintenance

    report = maintenance.merge(board, cards=list(cards) or None, target=target, dry_run=dry_run)
    if as_json:
        emit_json(report)
    else:
        into = report["target"]
        for branch in report["merged"]:
            how = "fast-forward" if branch in report["fast_forwarded"] else "merge commit"
            click.echo(f"{'would merge' if dry_run else 'merged'} {branch} into {into} ({how})")
        if report["already"]:
            click.echo(f"already in {into}: {', '.join(report['already'])}")
        if not report["merged"] and not report["already"] and not report["conflict"]:
            click.echo(f"nothing to merge into {into}")
        if report["conflict"]:
            files = ", ".join(report["conflict_files"]) or "unknown files"
            click.echo(
                f"{'would stop' if dry_run else 'stopped'}: {report['conflict']} conflicts "
                f"with {into} in {files}; nothing was left half-merged. To resolve it:",
                err=True,
            )
            for step in report["resolve"]:
                click.echo(f"  {step}", err=True)
    if report["conflict"]:
        sys.exit(1)


COMMANDS = [status, why, runs, logs, context, gc, merge]
