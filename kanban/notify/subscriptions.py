"""`kanban notify add`: check what a subscription is given before anything is stored.

A URL must be http or https, well formed, and (unless told not to look) answer a TCP
connection now; a command must be found; kinds and formats must be known; the secret is
named by an environment variable, never given, so it never reaches the board.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from kanban import api, clock, errors
from kanban.board import subscriptions as subscriptions_
from kanban.notify import events

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
REACH_TIMEOUT = 5.0


def check_url(url: str, *, reach: bool = True) -> str:
    shown = events.redact_url(url)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise errors.UsageError(f"malformed webhook URL {shown}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise errors.UsageError(
            f"webhook URL {shown}: only http:// and https:// URLs are sent to "
            f"(got {parts.scheme or 'no scheme'!r})"
        )
    if not parts.hostname or any(c.isspace() for c in url.strip()):
        raise errors.UsageError(f"malformed webhook URL {shown}: no host, or spaces in it")
    if reach:
        port = port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=REACH_TIMEOUT).close()
        except OSError as exc:
            raise errors.UsageError(
                f"webhook URL {shown} is unreachable from here ({exc.strerror or exc}); "
                "check it, or pass --no-check if only the dispatcher's host can reach it"
            ) from None
    return url.strip()


def check_command(argv: Sequence[str]) -> list[str]:
    if not argv or not argv[0]:
        raise errors.UsageError("--command needs a program: --command notify-send kanban")
    program = argv[0]
    if os.sep in program:
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise errors.UsageError(f"command {program} is not an executable file")
    elif shutil.which(program) is None:
        raise errors.UsageError(
            f"command {program!r} is not found on PATH; give its full path or install it"
        )
    return list(argv)


def add(
    board_: api.Board,
    *,
    url: str | None,
    command: Sequence[str] | None,
    kinds: str | None,
    format: str,
    secret_env: str | None,
    card_id: int | None,
    goal_id: int | None,
    profile: str | None,
    name: str | None,
    reach: bool = True,
) -> subscriptions_.SubscriptionView:
    if (url is None) == (not command):
        raise errors.UsageError("give --webhook URL or --command ARGV... (exactly one)")
    if format not in subscriptions_.FORMATS:
        raise errors.UsageError(
            f"unknown format {format!r}; known: {', '.join(subscriptions_.FORMATS)}"
        )
    if command and format != "json":
        raise errors.UsageError("a command hook gets the JSON event; --format is for webhooks")
    if sum(x is not None for x in (card_id, goal_id, profile)) > 1:
        raise errors.UsageError("scope it to one of --card, --goal or --profile (or none)")
    if secret_env is not None and not ENV_NAME.match(secret_env):
        raise errors.UsageError(
            f"--secret-env takes an environment variable's name (like KANBAN_HOOK_SECRET), "
            f"not {secret_env[:3]}…; the secret itself is never given on the command line"
        )
    wanted = subscriptions_.parse_kinds(kinds)
    target_url = check_url(url, reach=reach) if url is not None else None
    argv = check_command(command) if command else None
    chosen = name or _default_name(board_, url=target_url, argv=argv)
    return board_.tx.write(
        lambda c: subscriptions_.add_subscription(
            c,
            name=chosen,
            now=clock.now(),
            url=target_url,
            command=argv,
            format=format,
            kinds=wanted,
            secret_env=secret_env,
            card_id=card_id,
            goal_id=goal_id,
            profile=profile,
            actor=board_.actor,
        )
    )


def _default_name(board_: api.Board, *, url: str | None, argv: list[str] | None) -> str:
    base = (urlsplit(url).hostname or "webhook") if url else os.path.basename((argv or ["hook"])[0])
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", base).strip("-.") or "hook"
    taken = {s.name for s in board_.tx.read(subscriptions_.list_subscriptions)}
    number = 1
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base[:56]}-{number}"
