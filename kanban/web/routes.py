"""The JSON API under /api/: the shapes of the CLI's --json, the CLI's refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kanban import api, board, errors, health
from kanban.web import actions, feed, openapi
from kanban.web.app import HTTPRefusal, json_response, read_json, web_of

LOG_CHUNK = 256 * 1024  # bytes of a log handed out per request


def _board(request: Request) -> api.Board:
    return web_of(request).board


async def list_cards(request: Request) -> Response:
    q = request.query_params
    unknown = sorted(set(q) - {"status", "profile", "parent", "search", "all", "limit"})
    if unknown:
        raise errors.UsageError(
            f"unknown query parameter {unknown[0]!r}; use status, profile, parent, search, "
            "all or limit"
        )
    parent = actions.card_id(q["parent"]) if "parent" in q else None
    limit = q.get("limit")
    if limit is not None and (not limit.isdigit() or int(limit) < 1):
        raise errors.UsageError(f"limit is a positive number, not {limit!r}")
    b = _board(request)
    found = await run_in_threadpool(
        lambda: b.cards(
            q.getlist("status") or None,
            profile=q.get("profile"),
            parent=parent,
            search=q.get("search"),
            include_archived=q.get("all") in ("1", "true"),
            limit=int(limit) if limit else None,
        )
    )
    return json_response(found)


async def add_card(request: Request) -> Response:
    fields = actions.check(actions.ADD_FIELDS, await read_json(request), what="adding a card")
    b = _board(request)
    card = await run_in_threadpool(lambda: actions.add_card(b, fields))
    return json_response(card, status=201)


async def show_card(request: Request) -> Response:
    card = actions.card_id(request.path_params["card"])
    b = _board(request)
    return json_response(await run_in_threadpool(lambda: b.show(card)))


async def edit_card(request: Request) -> Response:
    card = actions.card_id(request.path_params["card"])
    fields = actions.check(actions.EDIT_FIELDS, await read_json(request), what="editing a card")
    b = _board(request)
    return json_response(await run_in_threadpool(lambda: actions.edit_card(b, card, fields)))


async def card_action(request: Request) -> Response:
    card = actions.card_id(request.path_params["card"])
    name = request.path_params["action"]
    action = actions.CARD_ACTIONS.get(name)
    if action is None:
        known = ", ".join(actions.CARD_ACTIONS)
        raise HTTPRefusal(f"no card action {name!r}; use one of: {known}", status=404)
    fields = actions.check(action.fields, await read_json(request), what=name)
    b = _board(request)
    return json_response(await run_in_threadpool(lambda: action.apply(b, card, fields)))


async def card_runs(request: Request) -> Response:
    card = actions.card_id(request.path_params["card"])
    b = _board(request)
    return json_response(await run_in_threadpool(lambda: b.runs(card)))


def read_log(b: api.Board, run_id: int, *, offset: int) -> dict[str, Any]:
    """A slice of a run's log from `offset`; `live` while the run still goes on."""
    run = b.tx.read(lambda c: board.get_run(c, run_id))
    if run is None:
        raise HTTPRefusal(f"no run {run_id} on this board (see `kanban runs CARD`)", status=404)
    path = (
        Path(run.log_path)
        if run.log_path
        else b.settings.log_dir / f"card-{run.card_id}-run-{run.id}.log"
    )
    text, end, here = "", offset, path.exists()
    if here:
        with path.open("rb") as fh:
            fh.seek(offset)
            chunk = fh.read(LOG_CHUNK)
        end = offset + len(chunk)
        text = chunk.decode("utf-8", errors="replace")
    return {
        "run": run.id,
        "card": run.card_id,
        "offset": end,
        "text": text,
        "live": run.outcome is None,
        "found": here,
        "note": None if here else f"no log here yet at {path} (the run is on host {run.host})",
    }


async def run_log(request: Request) -> Response:
    raw_run, raw_offset = request.path_params["run"], request.query_params.get("offset", "0")
    if not raw_run.isdigit() or not raw_offset.isdigit():
        raise errors.UsageError(
            "a run id and an offset are whole numbers, like /api/runs/4/log?offset=0"
        )
    b = _board(request)
    return json_response(
        await run_in_threadpool(lambda: read_log(b, int(raw_run), offset=int(raw_offset)))
    )


async def status(request: Request) -> Response:
    b = _board(request)
    return json_response(await run_in_threadpool(lambda: health.report(b)))


async def list_goals(request: Request) -> Response:
    b = _board(request)
    return json_response(await run_in_threadpool(lambda: b.goals.ls()))


def _goal_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise errors.UsageError(f"a goal id is a positive number like 3, not {text!r}")
    return int(text)


async def show_goal(request: Request) -> Response:
    goal = _goal_id(request.path_params["goal"])
    b = _board(request)
    return json_response(await run_in_threadpool(lambda: b.goals.show(goal)))


async def goal_action(request: Request) -> Response:
    goal = _goal_id(request.path_params["goal"])
    name = request.path_params["action"]
    action = actions.GOAL_ACTIONS.get(name)
    if action is None:
        raise HTTPRefusal(f"no goal action {name!r}; use approve or cancel", status=404)
    fields = actions.check(action.fields, await read_json(request), what=f"goal {name}")
    b = _board(request)
    return json_response(await run_in_threadpool(lambda: action.apply(b, goal, fields)))


async def list_schedules(request: Request) -> Response:
    b = _board(request)
    return json_response(await run_in_threadpool(lambda: b.schedules.ls()))


async def schedule_action(request: Request) -> Response:
    name, verb = request.path_params["name"], request.path_params["action"]
    apply = actions.SCHEDULE_ACTIONS.get(verb)
    if apply is None:
        raise HTTPRefusal(f"no schedule action {verb!r}; use pause or resume", status=404)
    actions.check((), await read_json(request), what=f"schedule {verb}")
    b = _board(request)
    return json_response(await run_in_threadpool(lambda: apply(b, name)))


async def events(request: Request) -> Response:
    web = web_of(request)
    return feed.response(request, web.board, pulse=web.pulse, poll=web.poll)


async def describe(request: Request) -> Response:
    return json_response(openapi.document())


ROUTES = [
    Route("/api/cards", list_cards, methods=["GET"]),
    Route("/api/cards", add_card, methods=["POST"]),
    Route("/api/cards/{card}", show_card, methods=["GET"]),
    Route("/api/cards/{card}", edit_card, methods=["PATCH"]),
    Route("/api/cards/{card}/runs", card_runs, methods=["GET"]),
    Route("/api/cards/{card}/{action}", card_action, methods=["POST"]),
    Route("/api/runs/{run}/log", run_log, methods=["GET"]),
    Route("/api/status", status, methods=["GET"]),
    Route("/api/goals", list_goals, methods=["GET"]),
    Route("/api/goals/{goal}", show_goal, methods=["GET"]),
    Route("/api/goals/{goal}/{action}", goal_action, methods=["POST"]),
    Route("/api/schedules", list_schedules, methods=["GET"]),
    Route("/api/schedules/{name}/{action}", schedule_action, methods=["POST"]),
    Route("/api/events", events, methods=["GET"]),
    Route("/api/openapi.json", describe, methods=["GET"]),
]
