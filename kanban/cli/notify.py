"""`kanban notify`: tell a person (a webhook, a chat, a command) when the board needs them."""

from __future__ import annotations

from typing import Any

import click

from kanban import clock
from kanban.cli._common import CARD, GOAL, Group, RowId, emit_json, json_option, pass_board


@click.group(cls=Group)
def notify_group() -> None:
    """Notifications: a webhook or a command told when a card blocks, fails, waits for
    review or finishes, a goal needs approval or ends, a run crashes, a dispatcher goes
    silent or a cost cap is reached.

    A matching event is written to the board's outbox in the same transaction as the change,
    and running dispatchers deliver it (signed, retried with backoff, each once even on
    several hosts). See docs/howto/notifications.md.

    \b
    Example:
      kanban notify add --webhook https://hooks.slack.com/services/T/B/X --format slack \\
          --on blocked,failed,review
    """


@notify_group.command("add")
@click.option("--webhook", "url", metavar="URL", help="POST each event to this http(s) URL.")
@click.option(
    "--command", "is_command", is_flag=True, help="Run ARGV... (no shell) for each event."
)
@click.argument("argv", nargs=-1)
@click.option("--on", "kinds", metavar="KINDS", help="Comma-separated kinds (default: all).")
@click.option(
    "--format",
    "fmt",
    default="json",
    show_default=True,
    help="Webhook body: json, slack, discord or ntfy.",
)
@click.option("--secret-env", metavar="VAR", help="Sign with the secret in this env variable.")
@click.option("--card", "card_id", type=CARD, help="Only this card's events.")
@click.option("--goal", "goal_id", type=GOAL, help="Only this goal's events.")
@click.option("--profile", help="Only events of cards with this profile.")
@click.option("--name", help="A name for ls, rm and test (default: from the host).")
@click.option("--no-check", is_flag=True, help="Do not try to reach the URL now.")
@json_option
@pass_board
def add(
    board: Any,
    url: str | None,
    is_command: bool,
    argv: tuple[str, ...],
    kinds: str | None,
    fmt: str,
    secret_env: str | None,
    card_id: int | None,
    goal_id: int | None,
    profile: str | None,
    name: str | None,
    no_check: bool,
    as_json: bool,
) -> None:
    """Subscribe a webhook or a command to events.

    Kinds: blocked, failed, review, done, approval, goal_done, goal_blocked, crashed,
    silent, cost_cap. A command gets the event as JSON on stdin and as KANBAN_EVENT_*
    variables; put `--` before its own options.

    \b
    Examples:
      kanban notify add --webhook https://ntfy.sh/my-board --format ntfy --on blocked,failed
      kanban notify add --webhook https://example.com/hook --secret-env HOOK_SECRET
      kanban notify add --on done --goal 3 --command -- notify-send -u low kanban
    """
    from kanban import errors
    from kanban.notify import subscriptions

    if argv and not is_command:
        raise errors.UsageError(f"unexpected {argv[0]!r}; a command hook needs --command")
    sub = subscriptions.add(
        board,
        url=url,
        command=argv if is_command else None,
        kinds=kinds,
        format=fmt,
        secret_env=secret_env,
        card_id=card_id,
        goal_id=goal_id,
        profile=profile,
        name=name,
        reach=not no_check,
    )
    if as_json:
        emit_json(_json(sub))
    else:
        click.echo(f"subscribed {sub.name}: {_target(sub)} on {_kinds(sub)}")


@notify_group.command("ls")
@json_option
@pass_board
def ls(board: Any, as_json: bool) -> None:
    """List subscriptions with what they sent, what waits and what died (URLs redacted).

    \b
    Example:
      kanban notify ls
    """
    from kanban.board import subscriptions

    subs = board.tx.read(subscriptions.list_subscriptions)
    if as_json:
        emit_json([_json(s) for s in subs])
        return
    if not subs:
        click.echo("no subscriptions; add one with `kanban notify add`")
    for s in subs:
        dead = click.style(f"{s.dead} dead", fg="red") if s.dead else "0 dead"
        signed = f", signed with ${s.secret_env}" if s.secret_env else ""
        click.echo(
            f"{s.name}  {_target(s)}  [{s.format}{signed}] on {_kinds(s)}{_scope(s)}  "
            f"sent {s.sent}, pending {s.pending}, {dead}"
        )
        if s.last_error and (s.dead or s.pending):
            click.echo(f"    last error: {s.last_error}")


@notify_group.command("rm")
@click.argument("name")
@json_option
@pass_board
def rm(board: Any, name: str, as_json: bool) -> None:
    """Remove a subscription and its undelivered messages.

    \b
    Example:
      kanban notify rm slack-1
    """
    from kanban.board import subscriptions

    gone = board.tx.write(lambda c: subscriptions.remove_subscription(c, name=name))
    if as_json:
        emit_json({"name": gone.name, "removed": True})
    else:
        click.echo(f"removed {gone.name}")


@notify_group.command("test")
@click.argument("name")
@json_option
@pass_board
def test(board: Any, name: str, as_json: bool) -> None:
    """Send a sample event to NAME now and print what the receiver answered.

    \b
    Example:
      kanban notify test slack-1
    """
    from kanban import errors
    from kanban.notify import courier

    answer = courier.send_test(board, name=name)
    if as_json and answer.ok:
        emit_json({"name": name, "ok": True, "answer": answer.answer})
        return
    if answer.answer and not as_json:
        click.echo(answer.answer)
    if not answer.ok:
        raise errors.UsageError(f"test to {name} failed: {answer.error}")
    click.echo(f"test to {name}: delivered")


@notify_group.command("log")
@click.argument("name", required=False)
@click.option("--dead", is_flag=True, help="Only deliveries that gave up (the dead letters).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=30, show_default=True)
@json_option
@pass_board
def log(board: Any, name: str | None, dead: bool, limit: int, as_json: bool) -> None:
    """Recent deliveries (of NAME): event, state, attempts, the receiver's answer.

    \b
    Examples:
      kanban notify log --dead
      kanban notify log slack-1 --limit 5
    """
    from kanban.board import outbox

    found = board.tx.read(
        lambda c: outbox.list_deliveries(
            c, name=name, state=outbox.DEAD if dead else None, limit=limit
        )
    )
    if as_json:
        emit_json([_delivery_json(d) for d in found])
        return
    for d in found:
        subject = f"card {d.card_id}" if d.card_id else (f"goal {d.goal_id}" if d.goal_id else "")
        click.echo(
            f"{d.id:>6}  {clock.iso(d.at)}  {d.subscription}  {d.kind} {subject}  "
            f"{d.state} after {d.attempts} attempt(s)  {d.event_id}"
        )
        if d.error or d.answer:
            click.echo(f"        {d.error or d.answer}")


@notify_group.command("redeliver")
@click.argument("delivery_id", type=RowId("delivery"))
@json_option
@pass_board
def redeliver(board: Any, delivery_id: int, as_json: bool) -> None:
    """Send a dead (or sent) delivery again, with the same event id and body.

    \b
    Example:
      kanban notify redeliver 42
    """
    from kanban.board import outbox

    d = board.tx.write(
        lambda c: outbox.redeliver(c, delivery_id=delivery_id, now=clock.now()),
        wake_dispatcher=True,
    )
    if as_json:
        emit_json({"delivery": d.id, "event_id": d.event_id, "redelivered": True})
    else:
        click.echo(f"delivery {d.id} ({d.event_id}) goes out again at the dispatcher's next pass")


def _target(sub: Any) -> str:
    from kanban.notify import events

    if sub.url is not None:
        return events.redact_url(sub.url)
    return "command " + " ".join(sub.command[:1]) + (" …" if len(sub.command) > 1 else "")


def _kinds(sub: Any) -> str:
    return ",".join(sub.kinds) if sub.kinds else "all"


def _scope(sub: Any) -> str:
    for label, value in (("card", sub.card_id), ("goal", sub.goal_id), ("profile", sub.profile)):
        if value is not None:
            return f" ({label} {value})"
    return ""


def _json(sub: Any) -> dict[str, Any]:
    return {
        "name": sub.name,
        "target": _target(sub),
        "format": sub.format,
        "kinds": list(sub.kinds) if sub.kinds else None,
        "secret_env": sub.secret_env,
        "card": sub.card_id,
        "goal": sub.goal_id,
        "profile": sub.profile,
        "sent": sub.sent,
        "pending": sub.pending,
        "dead": sub.dead,
        "last_error": sub.last_error,
    }


def _delivery_json(d: Any) -> dict[str, Any]:
    keys = ("id", "event_id", "subscription", "kind", "card_id", "goal_id", "state", "attempts")
    found: dict[str, Any] = {k: getattr(d, k) for k in keys}
    found.update(at=clock.iso(d.at), answer=d.answer, error=d.error)
    return found
