"""Who may talk to the web board: loopback or a token, sessions, CSRF, read-only.

Without a token the board answers only on loopback, and only to requests whose Host header is
a loopback name (a web page elsewhere cannot reach it through DNS rebinding). With a token,
the API takes `Authorization: Bearer TOKEN` and browsers log in once for an http-only cookie.
Form posts carry a per-browser CSRF value that must match its cookie (double submit).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from kanban import errors

SESSION_COOKIE = "kanban_session"
CSRF_COOKIE = "kanban_csrf"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
MIN_TOKEN = 16


@dataclasses.dataclass(frozen=True)
class Access:
    """How the app lets people in (one per server)."""

    token: str | None = None
    read_only: bool = False
    # Host names a tokenless board answers to; tests add "testserver".
    loopback_hosts: frozenset[str] = LOOPBACK_NAMES

    @property
    def session(self) -> str | None:
        """The cookie value a logged-in browser holds: derived from the token, not the token."""
        if self.token is None:
            return None
        return hmac.new(self.token.encode(), b"kanban-web-session", hashlib.sha256).hexdigest()

    def bearer_ok(self, header: str | None) -> bool:
        if self.token is None or not header:
            return False
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), self.token.encode()
        )

    def cookie_ok(self, value: str | None) -> bool:
        session = self.session
        return bool(session and value and hmac.compare_digest(value.encode(), session.encode()))

    def token_ok(self, value: str) -> bool:
        return self.token is not None and hmac.compare_digest(
            value.strip().encode(), self.token.encode()
        )

    def host_ok(self, host_header: str | None) -> bool:
        """A tokenless board answers only to loopback names (DNS rebinding defence)."""
        if self.token is not None:
            return True
        return host_name(host_header or "") in self.loopback_hosts


def host_name(host_header: str) -> str:
    """`127.0.0.1:8700` -> `127.0.0.1`; `[::1]:8700` -> `::1`."""
    text = host_header.strip().lower()
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a board to the network without a token."""
    if token is None and not is_loopback(host):
        raise errors.UsageError(
            f"refused: --host {host} is reachable from other machines and no token is set; "
            "set KANBAN_WEB_TOKEN (or pass --token-file FILE) with a long random secret, "
            "or keep the default --host 127.0.0.1"
        )


def load_token(*, token_file: Path | None, env: dict[str, str] | None = None) -> str | None:
    """The token from --token-file, else $KANBAN_WEB_TOKEN; None when neither is set."""
    env = dict(os.environ) if env is None else env
    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise errors.UsageError(f"cannot read the token file {token_file}: {exc}") from None
        where = f"the token file {token_file}"
    else:
        text = env.get("KANBAN_WEB_TOKEN", "").strip()
        where = "KANBAN_WEB_TOKEN"
        if not text:
            return None
    if len(text) < MIN_TOKEN:
        raise errors.UsageError(
            f"{where} holds {len(text)} characters; use at least {MIN_TOKEN} random ones "
            "(for example `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return text


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def csrf_ok(cookie: str | None, submitted: str | None) -> bool:
    return bool(cookie and submitted and hmac.compare_digest(cookie.encode(), submitted.encode()))
