"""The OpenAPI 3.1 description of /api/, built from the same tables the handlers check."""

from __future__ import annotations

from typing import Any

from kanban.__about__ import __version__
from kanban.web import actions

SCHEMA_OF: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "ints": {"type": "array", "items": {"type": "integer"}},
    "strs": {"type": "array", "items": {"type": "string"}},
}


def _body(fields: tuple[actions.Field, ...]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {f.name: SCHEMA_OF[f.kind] | {"description": f.help} for f in fields},
    }
    required = [f.name for f in fields if f.required]
    if required:
        schema["required"] = required
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, body: dict[str, Any] | None = None, *, ok: str = "200") -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            ok: {"description": "The result, shaped like the CLI's --json"},
            "4XX": {
                "description": "Refused with the CLI's message; nothing changed",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if body is not None:
        op["requestBody"] = body
    return op


def _param(name: str, kind: str = "integer") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/api/cards": {
            "get": _op(
                "List cards (kanban ls --json); query: status, profile, parent, search, all, limit"
            ),
            "post": _op("Add a card (kanban add)", _body(actions.ADD_FIELDS), ok="201"),
        },
        "/api/cards/{card}": {
            "parameters": [_param("card")],
            "get": _op("Everything about one card (kanban show --json)"),
            "patch": _op("Edit a card (kanban edit --json)", _body(actions.EDIT_FIELDS)),
        },
        "/api/cards/{card}/runs": {
            "parameters": [_param("card")],
            "get": _op("Every run of a card (kanban runs --json)"),
        },
        "/api/runs/{run}/log": {
            "parameters": [_param("run")],
            "get": _op("A slice of a run's log from ?offset=N; `live` while it runs"),
        },
        "/api/status": {"get": _op("How the board is doing (kanban status --json)")},
        "/api/goals": {"get": _op("Goals (kanban goal ls --json)")},
        "/api/goals/{goal}": {
            "parameters": [_param("goal")],
            "get": _op("A goal, its turns and cards (kanban goal show --json)"),
        },
        "/api/schedules": {"get": _op("Schedules (kanban cron ls --json)")},
        "/api/events": {
            "get": {
                "summary": "The event history as Server-Sent Events; resume with Last-Event-ID",
                "responses": {"200": {"description": "text/event-stream, one event per row"}},
            }
        },
    }
    for name, action in actions.CARD_ACTIONS.items():
        paths[f"/api/cards/{{card}}/{name}"] = {
            "parameters": [_param("card")],
            "post": _op(action.summary, _body(action.fields)),
        }
    for name, action in actions.GOAL_ACTIONS.items():
        paths[f"/api/goals/{{goal}}/{name}"] = {
            "parameters": [_param("goal")],
            "post": _op(action.summary, _body(action.fields)),
        }
    for verb in actions.SCHEDULE_ACTIONS:
        paths[f"/api/schedules/{{name}}/{verb}"] = {
            "parameters": [_param("name", "string")],
            "post": _op(f"{verb.capitalize()} a schedule (kanban cron {verb})"),
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "kanban web board", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {"type": "string", "description": "The CLI's message"},
                        "kind": {"type": "string", "description": "The error's class"},
                        "exit_code": {"type": "integer", "description": "The CLI's exit code"},
                    },
                }
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
