"""Send one event: a webhook POST (standard library `http.client`) or a command hook (argv).

`http.client` rather than a client library: it does exactly one request, never follows a
redirect (a 3xx is a failed attempt, named), takes a per-request timeout and adds no
dependency; webhooks need nothing more. Nothing here touches the board.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.client
import os
import signal
import socket
import ssl
import subprocess
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from kanban.__about__ import __version__
from kanban.board import subscriptions
from kanban.notify import events

MAX_ANSWER = 4000  # what is kept of a receiver's answer or a command's output


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    ok: bool
    answer: str | None = None  # "HTTP 200 ..." with the start of the body, or the output
    error: str | None = None  # why it failed, safe to print (no secret, no full URL)


def deliver(
    target: subscriptions.SubscriptionView,
    *,
    body: str,
    evt: Mapping[str, Any],
    attempt: int,
    timeout: float,
    environ: Mapping[str, str] | None = None,
) -> Answer:
    """One attempt at one delivery. The secret is read from `environ` now, never stored."""
    environ = os.environ if environ is None else environ
    data = body.encode()
    signature = None
    if target.secret_env:
        secret = environ.get(target.secret_env)
        if not secret:
            return Answer(
                ok=False,
                error=f"the signing secret's variable {target.secret_env} is not set in the "
                "dispatcher's environment; set it and restart the dispatcher",
            )
        signature = events.sign(secret, data)
    if target.command is not None:
        return run_command(
            list(target.command),
            stdin=data,
            env=hook_env(evt, attempt=attempt, signature=signature, environ=environ),
            timeout=timeout,
        )
    assert target.url is not None
    headers = {
        "User-Agent": f"kanban/{__version__}",
        "Kanban-Event-Id": str(evt["id"]),
        "Idempotency-Key": str(evt["id"]),
        "Kanban-Event-Kind": str(evt["kind"]),
        "Kanban-Delivery-Attempt": str(attempt),
        **events.headers(dict(evt), format=target.format),
    }
    if signature is not None:
        headers[events.SIGNATURE_HEADER] = signature
    return post(target.url, body=data, headers=headers, timeout=timeout)


def post(url: str, *, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
    shown = events.redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return Answer(ok=False, error=f"malformed URL {shown}: {exc}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Answer(ok=False, error=f"not an http(s) URL: {shown}")
    sent = dict(headers)
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        sent["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        conn = http.client.HTTPSConnection(parts.hostname, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
    # The socket's timeout bounds each read; this bounds the whole request, so a receiver
    # that answers a byte at a time cannot hold the courier for longer than `timeout`.
    cut = threading.Event()
    watchdog = threading.Timer(timeout, _cut, args=(conn, cut))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("POST", target, body=body, headers=sent)
        response = conn.getresponse()
        text = response.read(MAX_ANSWER).decode("utf-8", "replace")
        status = response.status
        location = response.getheader("Location")
    except (OSError, http.client.HTTPException) as exc:
        if cut.is_set() or isinstance(exc, TimeoutError):
            return Answer(ok=False, error=f"no answer from {shown} within {timeout:g}s")
        return Answer(ok=False, error=f"{shown}: {_scrub(str(exc) or type(exc).__name__, url)}")
    finally:
        watchdog.cancel()
        conn.close()
    if cut.is_set():
        return Answer(ok=False, error=f"no answer from {shown} within {timeout:g}s")
    answer = f"HTTP {status}" + (f": {text.strip()}" if text.strip() else "")
    if 200 <= status < 300:
        return Answer(ok=True, answer=answer)
    if 300 <= status < 400:
        where = events.redact_url(location) if location else "nowhere"
        return Answer(
            ok=False, answer=answer, error=f"HTTP {status}: redirect to {where} not followed"
        )
    return Answer(ok=False, answer=answer, error=f"HTTP {status} from {shown}")


def _cut(conn: http.client.HTTPConnection, cut: threading.Event) -> None:
    cut.set()
    if conn.sock is not None:
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_RDWR)


def _scrub(text: str, url: str) -> str:
    parts = urlsplit(url)
    for secret in (url, parts.password, parts.path, parts.query):
        if secret and len(secret) > 1:
            text = text.replace(secret, "***")
    return text


def hook_env(
    evt: Mapping[str, Any],
    *,
    attempt: int,
    signature: str | None,
    environ: Mapping[str, str],
) -> dict[str, str]:
    """The dispatcher's environment plus the event as KANBAN_EVENT_* variables."""
    env = dict(environ)
    for key in ("id", "kind", "created", "board", "text"):
        env[f"KANBAN_EVENT_{key.upper()}"] = _env_value(evt.get(key))
    for section in ("card", "goal", "run", "dispatcher"):
        for key, value in (evt.get(section) or {}).items():
            if value is not None:
                env[f"KANBAN_EVENT_{section.upper()}_{key.upper()}"] = _env_value(value)
    env["KANBAN_EVENT_ATTEMPT"] = str(attempt)
    if signature is not None:
        env["KANBAN_EVENT_SIGNATURE"] = signature
    return env


def _env_value(value: Any) -> str:
    return "" if value is None else str(value).replace("\x00", "")[:MAX_ANSWER]


def run_command(argv: list[str], *, stdin: bytes, env: Mapping[str, str], timeout: float) -> Answer:
    """Run a hook: argv (never a shell), the event on stdin, in its own process group (the
    whole group is killed at the timeout); its output is kept, bounded."""
    try:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
        )
    except OSError as exc:
        return Answer(ok=False, error=f"cannot run {argv[0]}: {exc.strerror or exc}")
    try:
        output, _ = child.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        output, _ = child.communicate()
        return Answer(
            ok=False, answer=_tail(output), error=f"{argv[0]} did not finish within {timeout:g}s"
        )
    except BrokenPipeError:  # it exited without reading the event
        output, _ = child.communicate()
    text = _tail(output)
    if child.returncode == 0:
        return Answer(ok=True, answer=text or "exit 0")
    return Answer(ok=False, answer=text, error=f"{argv[0]} exited with {child.returncode}")


def _tail(output: bytes | None) -> str | None:
    if not output:
        return None
    text = output.decode("utf-8", "replace")
    return text if len(text) <= MAX_ANSWER else "…" + text[-MAX_ANSWER:]
