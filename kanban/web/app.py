"""The ASGI app: one `api.Board`, the JSON API, the pages, the event stream, the guards.

`create_app(board, access=...)` is what `kanban serve` hands to uvicorn and what tests call
in-process. Every write goes through an `api.Board` verb; domain errors become JSON (or a
page) with the CLI's message and a status code that fits.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kanban import api, errors, termtext, views
from kanban.web import feed, security

HERE = Path(__file__).parent
MAX_BODY = 2 * 1024 * 1024  # bytes; the board's own limits (1,000,000 characters) apply inside

STATUS_CODES: dict[type[errors.KanbanError], int] = {
    errors.CardNotFound: 404,
    errors.GoalNotFound: 404,
    errors.ScheduleNotFound: 404,
    errors.InvalidTransition: 409,
    errors.CycleError: 409,
    errors.LeaseLost: 409,
    errors.DatabaseError: 503,
    errors.SchemaError: 503,
}


class HTTPRefusal(errors.KanbanError):
    """A refusal of the web layer itself (size, content type, token, read-only)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Web:
    """What every handler needs, kept on `app.state.web`."""

    board: api.Board
    access: security.Access
    templates: Environment
    pulse: feed.Pulse  # wakes the live streams when the board changed
    poll: float = 0.1  # PostgreSQL: seconds between looks for new events


def web_of(request: Request) -> Web:
    found: Web = request.app.state.web
    return found


def status_of(error: errors.KanbanError) -> int:
    if isinstance(error, HTTPRefusal):
        return error.status
    for kind in type(error).__mro__:
        if kind in STATUS_CODES:
            return STATUS_CODES[kind]
    return 400 if isinstance(error, errors.UsageError | errors.ProfileError) else 422


def error_json(error: errors.KanbanError) -> Response:
    status = status_of(error)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    # The shape of the CLI's refusals under --json.
    body = {"error": error.message, "exit_code": error.exit_code, "kind": type(error).__name__}
    return Response(
        termtext.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def to_json(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def encode(value: Any) -> bytes:
    """`value` as the JSON the CLI's --json prints (same keys and values, compact).

    orjson writes it: over 10,000 cards it took 27 ms where `json.dumps` of `to_json` took
    350 ms (docs/performance.md). A list of cards goes to it as is (it writes dataclasses
    field by field and aware UTC times with a Z, as `views.jsonable` does); anything else
    goes through its own `to_json` first.
    """
    plain = value if _only_cards(value) else to_json(value)
    text = orjson.dumps(plain, default=str, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z)
    return termtext.escape_c1(text)  # orjson escapes C0 (ESC); DEL and C1 here, as --json


def _only_cards(value: Any) -> bool:
    return isinstance(value, list) and all(type(v) is views.CardView for v in value)


def json_response(value: Any, *, status: int = 200) -> Response:
    return Response(encode(value), status_code=status, media_type="application/json")


async def read_body(request: Request) -> bytes:
    """The request body, refused past MAX_BODY whatever Content-Length claims."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _too_large()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> HTTPRefusal:
    return HTTPRefusal(
        f"the request body is over {MAX_BODY // (1024 * 1024)} MiB; "
        "put long material in a file in the repository and point to it",
        status=413,
    )


async def read_json(request: Request) -> Any:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HTTPRefusal(
            f"send JSON with Content-Type: application/json (not {kind or 'nothing'})",
            status=415,
        )
    raw = await read_body(request)
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.UsageError(f"the request body is not valid JSON: {exc}") from None


async def read_form(request: Request) -> dict[str, str]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPRefusal(f"a form post is url-encoded, not {kind or 'nothing'}", status=415)
    raw = await read_body(request)
    try:
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise errors.UsageError("the form is not UTF-8 text") from None


def _timed(send: Send) -> Send:
    """Add `Server-Timing: app;dur=MS` (the time until the response starts) to responses."""
    started = time.perf_counter()

    async def timed_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            took = (time.perf_counter() - started) * 1000
            headers = [
                *message.get("headers", []),
                (b"server-timing", f"app;dur={took:.1f}".encode()),
            ]
            message = {**message, "headers": headers}
        await send(message)

    return timed_send


class Guard:
    """Host check, token, read-only and CSRF-safe content types, before any route runs."""

    def __init__(self, app: ASGIApp, access: security.Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self.refusal(request)
        if refusal is None:
            await self.app(scope, receive, _timed(send))
            return
        if isinstance(refusal, Response):
            await refusal(scope, receive, send)
            return
        await error_json(refusal)(scope, receive, send)

    def refusal(self, request: Request) -> HTTPRefusal | Response | None:
        access, path = self.access, request.url.path
        if not access.host_ok(request.headers.get("host")):
            return HTTPRefusal(
                "this board is served to loopback only; open it as http://127.0.0.1:PORT "
                "(or serve it with a token to reach it by another name)",
                status=421,
            )
        public = path.startswith("/static/") or path == "/login"
        signed_in = access.bearer_ok(request.headers.get("authorization")) or access.cookie_ok(
            request.cookies.get(security.SESSION_COOKIE)
        )
        if access.token is not None and not public and not signed_in:
            if path.startswith("/api/"):
                return HTTPRefusal(
                    "this board needs its token: send Authorization: Bearer TOKEN", status=401
                )
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        writing = request.method not in ("GET", "HEAD", "OPTIONS")
        if writing and access.read_only and path != "/login":
            return HTTPRefusal(
                "this board is served read-only (kanban serve --read-only); nothing was changed",
                status=403,
            )
        return None


def create_app(board: api.Board, *, access: security.Access | None = None) -> Starlette:
    from kanban.web import pages, routes

    access = access or security.Access()
    templates = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    pages.install_filters(templates)
    app = Starlette(
        routes=[
            *routes.ROUTES,
            *pages.ROUTES,
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={
            errors.KanbanError: _on_error,  # type: ignore[dict-item]
            HTTPException: _on_http,  # type: ignore[dict-item]
        },
    )
    app.state.web = Web(
        board=board, access=access, templates=templates, pulse=feed.Pulse(board, poll=0.1)
    )
    app.add_middleware(Guard, access=access)
    return app


async def _on_error(request: Request, exc: errors.KanbanError) -> Response:
    if request.url.path.startswith("/api/"):
        return error_json(exc)
    from kanban.web import pages

    return pages.error_page(request, exc, status=status_of(exc))


async def _on_http(request: Request, exc: HTTPException) -> Response:
    """Unknown paths and methods: JSON under /api/, a page elsewhere."""
    message = (
        f"no such page {request.url.path} (the API is described at /api/openapi.json)"
        if exc.status_code == 404
        else f"{request.method} is not allowed on {request.url.path}"
    )
    return await _on_error(request, HTTPRefusal(message, status=exc.status_code))
