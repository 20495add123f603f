"""`kanban dispatch` (the main loop) and `kanban demo`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from kanban import clock
from kanban.cli import render
from kanban.cli._common import DURATION, State, emit_json, json_option, pass_board, pass_state


def _logging(verbose: int, quiet: bool, as_json: bool = False) -> None:
    from kanban import eventlog

    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    from kanban import termtext

    handler = logging.StreamHandler(sys.stderr)  # agent text in messages: cleaned (not JSON)
    handler.setFormatter(
        eventlog.JsonFormatter()
        if as_json
        else termtext.CleanFormatter("%(asctime)s %(levelname)s %(message)s")
    )
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


@click.command()
@click.option("--once", is_flag=True, help="Run one tick and exit (for system cron).")
@click.option(
    "--interval",
    type=DURATION,
    help="Time between periodic ticks, with its unit (default 60s); changes wake it at once.",
)
@click.option(
    "--max-workers", type=click.IntRange(1, 1000), help="Running cards on this host (default 4)."
)
@click.option(
    "--drain",
    is_flag=True,
    help="Exit once nothing can make progress, print a summary, and exit 1 if a card it ran "
    "ended blocked or failed (or a ready card cannot run).",
)
@click.option(
    "--max-wait",
    type=DURATION,
    help="With --drain: wait for a backoff ending within DURATION (default 60s); a card "
    "backing off longer is reported as left, not waited for.",
)
@click.option(
    "--ok-if-blocked", is_flag=True, help="With --drain: exit 0 with cards blocked or left."
)
@click.option("--log-json", is_flag=True, help="Log one JSON object a line (for log collectors).")
@click.option(
    "--handoff",
    is_flag=True,
    envvar="KANBAN_HANDOFF",
    help="On SIGTERM, stop this host's agents and hand their cards back to the board "
    "(no attempt spent) instead of letting them finish.",
)
@click.option(
    "--grace",
    envvar="KANBAN_STOP_GRACE",
    default="0s",
    show_default=True,
    help="On SIGTERM, wait this long at most for this host's runs to finish (or be handed "
    "back) before exiting; keep it under the pod's terminationGracePeriodSeconds.",
)
@click.option(
    "--at",
    "at_text",
    metavar="TIME",
    help="With --once: evaluate schedules as of TIME (HH:MM[:SS] today in each schedule's "
    "zone, or ISO-8601), to replay a missed window.",
)
@click.option("-v", "--verbose", count=True, help="Log more.")
@click.option("-q", "--quiet", is_flag=True, help="Log only warnings and errors.")
@json_option
@pass_board
def dispatch(
    board: Any,
    once: bool,
    interval: str | None,
    max_workers: int | None,
    drain: bool,
    max_wait: str | None,
    ok_if_blocked: bool,
    log_json: bool,
    handoff: bool,
    grace: str,
    at_text: str | None,
    verbose: int,
    quiet: bool,
    as_json: bool,
) -> None:
    """Run ready cards with their agents, each in its own git worktree.

    Every tick reclaims stale runs, promotes cards whose parents are done and starts what
    capacity allows. It ticks every --interval and at once when something changes (a card
    added or linked, a run ending), so a child starts within a second of its parent.
    SIGTERM or Ctrl-C claims nothing more at once and stops the loop after the current
    tick; running agents carry on under their supervisors and a restarted dispatcher picks
    them up. As a container's main process, give it `--grace` to wait for them, or
    `--handoff` to stop them and hand their cards back to other hosts (see
    docs/howto/kubernetes.md; `kanban health` answers the probes).

    Each tick also fires due schedules (`kanban cron`) and moves goals along (`kanban goal`).
    `--once` runs a single tick; two at once on one board wait for each other, so it is safe
    from system cron. `--once --at TIME` fires schedules as if it were TIME (a past TIME only;
    a future one is refused: it would silence them until then).

    \b
    Examples:
      kanban dispatch
      kanban dispatch --max-workers 8 --interval 30s
      * * * * * cd ~/src/project && kanban dispatch --once -q     # crontab
      kanban dispatch --once --at 09:00:30     # replay this morning's 09:00 fires
      kanban dispatch --handoff --grace 20s    # a pod: hand runs back on SIGTERM
    """
    from kanban import confine, cron, dispatcher, errors, eventlog, pods
    from kanban import drain as drain_mod

    confine.harden(subreaper=False)  # its environment holds what agents must not read
    _logging(verbose, quiet, log_json)
    if (max_wait or ok_if_blocked) and not drain:
        raise errors.UsageError("--max-wait and --ok-if-blocked go with --drain")
    if at_text is not None and not once:
        raise errors.UsageError("--at needs --once: it evaluates one tick as of that time")
    at = cron.parse_at(at_text) if at_text is not None else None
    if at is not None:
        board.schedules.check_at(at, clock.now())
    seconds = clock.parse_duration(interval, what="--interval") if interval else None
    if seconds is not None and seconds < 0.05:
        raise errors.UsageError("--interval must be at least 50ms")
    grace_s = clock.parse_duration(grace, what="--grace")
    loop = dispatcher.Dispatcher(
        board,
        max_workers=max_workers,
        interval=seconds,
        name=f"{board.settings.host_id}:once" if once else None,
        at=at,
    )
    if once:
        report = loop.tick()
        _deliver_once(board, loop.name)
        if as_json:
            emit_json(report.to_json())
        elif not quiet:
            fired = report.schedules.fired
            click.echo(
                f"tick: claimed {len(report.claimed)}, reclaimed {len(report.reclaimed)}, "
                f"crashed {len(report.crashed)}, waiting {report.waiting}, "
                f"fired {len(fired)} ({report.duration_ms:.0f} ms)"
            )
        return
    shutdown = pods.Shutdown()  # SIGTERM: claim nothing more, then --grace / --handoff
    shutdown.install()
    ender = drain_mod.Drain(board, max_wait=_max_wait(max_wait)) if drain else None
    log = eventlog.follow_in_thread(board, stop=shutdown.stop, emit=eventlog.log_event)
    until = (lambda _r: ender.over()) if ender else None
    pods.serve(loop, shutdown=shutdown, until=until, handoff=handoff, grace=grace_s)
    shutdown.stop.set()
    log.join(timeout=5)
    if ender is not None:
        summary = ender.summary()
        if as_json:
            emit_json(summary.to_json(ok_if_blocked=ok_if_blocked))
        elif not quiet:
            click.echo("\n".join(drain_mod.render(summary)))
        sys.exit(summary.exit_code(ok_if_blocked=ok_if_blocked))


def _max_wait(text: str | None) -> float:
    from kanban import drain

    return clock.parse_duration(text, what="--max-wait") if text else drain.DEFAULT_MAX_WAIT


def _deliver_once(board: Any, name: str) -> None:
    """After a `--once` tick (outside its lock): send the notifications due now."""
    from kanban.notify import courier

    courier.Courier(board, name=name).step()


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Make the demo repository here (default: a new temporary directory).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 32),
    default=4,
    show_default=True,
    help="Cards running at once.",
)
@click.option("--no-live", is_flag=True, help="No live board view (plain lines instead).")
@json_option
def demo(directory: Path | None, workers: int, no_live: bool, as_json: bool) -> None:
    """Watch kanban work: a real board, real worktrees, real processes, no setup.

    Makes a git repository in a temporary directory, puts a small dependency graph of cards
    on its board for the built-in demo agent (one card fails once and is retried, one adds a
    follow-up card), runs the dispatcher until the board drains, and sums up: cards, runs,
    branches, handoff times, elapsed. Nothing outside that directory is touched.

    \b
    Example:
      kanban demo
    """
    from kanban import demo as demo_mod

    live = not no_live and not as_json and sys.stdout.isatty()
    if live:
        from rich.live import Live

        with Live(render.demo_view(None), refresh_per_second=8, transient=False) as view:
            result = demo_mod.run(
                directory=directory,
                workers=workers,
                on_tick=lambda b: view.update(render.demo_view(b)),
            )
    else:
        if not as_json:
            click.echo("running the demo board (this takes about ten seconds)...")
        result = demo_mod.run(directory=directory, workers=workers)
    done = sum(1 for c in result.cards if c.status == "done")
    summary = {
        "repository": str(result.repo),
        "cards": len(result.cards),
        "done": done,
        "runs": result.runs,
        "failed_attempts_retried": result.failed_attempts,
        "branches": result.branches,
        "handoff_seconds": {
            "median": _median(result.handoffs),
            "max": max(result.handoffs, default=None),
        },
        "elapsed_seconds": round(result.elapsed, 2),
    }
    if as_json:
        emit_json(summary)
    else:
        click.echo("")
        click.echo(render.cards_table(result.cards))
        click.echo("")
        click.echo(
            f"{done} of {len(result.cards)} cards done in {result.elapsed:.1f}s with "
            f"{result.runs} runs ({result.failed_attempts} failed attempt retried)"
        )
        if result.handoffs:
            click.echo(
                f"parent done -> child's agent started: median "
                f"{_median(result.handoffs):.2f}s, max {max(result.handoffs):.2f}s"
            )
        click.echo(f"{len(result.branches)} branches, each holding its parents' work; look:")
        click.echo(f"  cd {result.repo} && git log --graph --oneline --all")
        click.echo(f"  kanban --db {result.repo}/.kanban/board.db show 7")
    if done != len(result.cards):
        sys.exit(1)


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[len(ordered) // 2], 3)


@click.command()
@click.option("--live", "probe", flag_value="live", help="Is the dispatcher's loop alive?")
@click.option(
    "--ready",
    "probe",
    flag_value="ready",
    default=True,
    help="Does it take cards: ticking, reaching the board, its clone in place (default)?",
)
@json_option
@pass_state
def health(state: State, probe: str, as_json: bool) -> None:
    """Answer a liveness or readiness probe for this host's `kanban dispatch`.

    Reads the health file the dispatcher writes in the state directory after every tick
    (no database connection), and exits 0 with one line when it is live (its process runs
    and ticked lately) or ready (also: its last tick reached the board, it is not shutting
    down, and the repository is cloned here); else exits 13 saying what is wrong.

    \b
    Examples:
      kanban health --live
      kanban health --ready
    """
    from kanban import pods

    found = pods.check(state.settings(require_board=False).state_dir, ready=probe == "ready")
    if as_json:
        emit_json({"probe": probe, "ok": True, "detail": found})
    else:
        click.echo(found)


COMMANDS = [dispatch, demo, health]
