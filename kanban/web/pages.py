"""The pages people look at: the board, a card, a goal, the login page; and their forms.

Every page answers as JSON too (`Accept: application/json`). A form post runs the same
action as the API and then redirects back (post/redirect/get); a refusal shows the page
again with the CLI's message.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from jinja2 import Environment
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from kanban import clock, errors, views
from kanban.web import actions, boardview, security
from kanban.web.app import HTTPRefusal, json_response, read_form, web_of
from kanban.web.routes import read_log


def install_filters(env: Environment) -> None:
    env.filters["ago"] = _ago
    env.filters["usd"] = views.usd
    env.filters["human"] = clock.human
    env.filters["iso"] = clock.iso
    env.globals["card_actions"] = actions.CARD_ACTIONS


def _ago(when: dt.datetime | None) -> str:
    if when is None:
        return "-"
    delta = (clock.now() - when).total_seconds()
    return f"in {clock.human(-delta)}" if delta < 0 else f"{clock.human(delta)} ago"


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> Response:
    web = web_of(request)
    csrf = request.cookies.get(security.CSRF_COOKIE) or security.new_csrf()
    html = web.templates.get_template(template).render(
        request=request,
        csrf=csrf,
        read_only=web.access.read_only,
        secured=web.access.token is not None,
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    if request.cookies.get(security.CSRF_COOKIE) != csrf:
        response.set_cookie(
            security.CSRF_COOKIE, csrf, httponly=True, secure=True, samesite="strict"
        )
    return response


def error_page(request: Request, error: errors.KanbanError, *, status: int) -> Response:
    if wants_json(request):
        from kanban.web.app import error_json

        return error_json(error)
    return render(request, "error.html", status=status, message=error.message)


async def board_page(request: Request) -> Response:
    filters = boardview.Filters.parse(request.query_params)
    raw = request.query_params.get("card")
    selected = actions.card_id(raw) if raw else None
    b = web_of(request).board
    page = await run_in_threadpool(lambda: boardview.read(b, filters, selected=selected))
    if wants_json(request):
        return json_response(page.to_json())
    return render(request, "board.html", page=page, add_fields=actions.ADD_FIELDS)


async def card_page(request: Request, *, error: str | None = None, status: int = 200) -> Response:
    card = actions.card_id(request.path_params["card"])
    b = web_of(request).board
    detail = await run_in_threadpool(lambda: b.show(card))
    if wants_json(request):
        return json_response(detail)
    raw_run = request.query_params.get("run", "")
    runs = {r.id: r for r in detail.runs}
    shown = (
        runs.get(int(raw_run)) if raw_run.isdigit() else (detail.runs[-1] if detail.runs else None)
    )
    log = await run_in_threadpool(lambda: read_log(b, shown.id, offset=0)) if shown else None
    return render(
        request,
        "card.html",
        status=status,
        d=detail,
        shown=shown,
        log=log,
        spend=_spend(detail.runs),
        error=error,
    )


def _spend(runs: tuple[views.RunView, ...]) -> float | None:
    costs = [r.cost_usd for r in runs if r.cost_usd is not None]
    return sum(costs) if costs else None


async def _checked_form(request: Request) -> dict[str, str]:
    form = await read_form(request)
    if not security.csrf_ok(request.cookies.get(security.CSRF_COOKIE), form.pop("csrf", None)):
        raise HTTPRefusal(
            "this form is stale or came from another site (CSRF check failed); "
            "reload the page and try again",
            status=403,
        )
    return form


async def card_form(request: Request) -> Response:
    card = actions.card_id(request.path_params["card"])
    name = request.path_params["action"]
    action = actions.CARD_ACTIONS.get(name)
    if action is None:
        raise HTTPRefusal(f"no card action {name!r}", status=404)
    form = await _checked_form(request)
    b = web_of(request).board
    try:
        fields = actions.check(action.fields, actions.from_form(action.fields, form), what=name)
        await run_in_threadpool(lambda: action.apply(b, card, fields))
    except errors.KanbanError as exc:
        from kanban.web.app import status_of

        return await card_page(request, error=exc.message, status=status_of(exc))
    return RedirectResponse(f"/cards/{card}", status_code=303)


async def add_form(request: Request) -> Response:
    form = await _checked_form(request)
    fields = actions.check(
        actions.ADD_FIELDS, actions.from_form(actions.ADD_FIELDS, form), what="adding a card"
    )
    b = web_of(request).board
    card = await run_in_threadpool(lambda: actions.add_card(b, fields))
    return RedirectResponse(f"/?card={card.id}", status_code=303)


async def goal_page(request: Request) -> Response:
    raw = request.path_params["goal"]
    if not raw.isdigit():
        raise errors.UsageError(f"a goal id is a positive number like 3, not {raw!r}")
    b = web_of(request).board
    detail = await run_in_threadpool(lambda: b.goals.show(int(raw)))
    if wants_json(request):
        return json_response(detail)
    return render(request, "goal.html", g=detail)


async def goal_form(request: Request) -> Response:
    raw, name = request.path_params["goal"], request.path_params["action"]
    action = actions.GOAL_ACTIONS.get(name)
    if action is None or not raw.isdigit():
        raise HTTPRefusal(f"no goal action {name!r} for goal {raw!r}", status=404)
    form = await _checked_form(request)
    fields = actions.check(action.fields, actions.from_form(action.fields, form), what=name)
    b = web_of(request).board
    await run_in_threadpool(lambda: action.apply(b, int(raw), fields))
    return RedirectResponse(f"/goals/{raw}", status_code=303)


async def login(request: Request) -> Response:
    access = web_of(request).access
    nxt = request.query_params.get("next", "/")
    nxt = nxt if nxt.startswith("/") and not nxt.startswith("//") else "/"
    if request.method == "GET":
        return render(request, "login.html", next=nxt, failed=False)
    form = await _checked_form(request)
    if not access.token_ok(form.get("token", "")):
        return render(request, "login.html", status=401, next=nxt, failed=True)
    response = RedirectResponse(nxt, status_code=303)
    response.set_cookie(
        security.SESSION_COOKIE,
        access.session or "",
        httponly=True,
        secure=True,
        samesite="strict",
        max_age=30 * 24 * 3600,
    )
    return response


ROUTES = [
    Route("/", board_page, methods=["GET"]),
    Route("/cards", add_form, methods=["POST"]),
    Route("/cards/{card}", card_page, methods=["GET"]),
    Route("/cards/{card}/{action}", card_form, methods=["POST"]),
    Route("/goals/{goal}", goal_page, methods=["GET"]),
    Route("/goals/{goal}/{action}", goal_form, methods=["POST"]),
    Route("/login", login, methods=["GET", "POST"]),
]
