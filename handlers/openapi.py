"""`GET /openapi.json`: the API described, from the route table (`handlers.routes.ROUTES`).

Every schema is generated from the models that validate the requests and describe the answers;
a test fuzzes the running API against this document.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from handlers.answers import Common
from handlers.openapi_docs import describe
from handlers.openapi_webhooks import SECURITY_SCHEMES, SERVERS, webhooks
from handlers.routes import ROUTES
from worker import __version__

_ERRORS = {
    "401": "Authentication failed (plugNmeet body)",
    "405": "Only POST (plugNmeet body)",
    "404": "No such route (plugNmeet body, status_code NOT_FOUND)",
    "413": "Body larger than the route's limit (plugNmeet body)",
    "415": "Content-Type is not application/json (plugNmeet body)",
}


def _items_refs(schema: Any) -> None:
    """`x-items-model` (a list validated item by item, see BulkRequest) becomes its `items`."""
    if isinstance(schema, dict):
        name = schema.pop("x-items-model", None)
        if name:
            schema["items"] = {"$ref": f"#/components/schemas/{name}"}
        for value in schema.values():
            _items_refs(value)
    elif isinstance(schema, list):
        for value in schema:
            _items_refs(value)


def _ref(model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    _items_refs(schema)
    defs.update(schema.pop("$defs", {}))
    defs[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def build_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    defs: dict[str, Any] = {}
    common = _ref(Common, defs)
    paths: dict[str, Any] = {}
    for route in ROUTES:
        body = _ref(route.request, defs)
        responses: dict[str, Any] = {
            str(code): {"description": "plugNmeet answer", "content": _json(_ref(model, defs))}
            for code, model in route.answers.items()
        }
        responses |= {
            code: {"description": d, "content": _json(common)} for code, d in _ERRORS.items()
        }
        paths[route.path] = {
            "post": {
                "operationId": route.operation_id,
                "summary": route.summary,
                "security": [{"apiKey": [], "hashSignature": []}],
                "requestBody": {"required": True, "content": _json(body)},
                "responses": responses,
            }
        }
    paths["/webhook"] = {
        "post": {
            "summary": "LiveKit's signed events (Authorization: <JWT>, no Bearer)",
            "requestBody": {
                "required": True,
                "content": {"application/webhook+json": {"schema": {"type": "object"}}},
            },
            "responses": {
                "200": {"description": "accepted (or a duplicate)", "content": _text()},
                "400": {"description": "signed, but not an event", "content": _text()},
                "401": {"description": "signature does not verify", "content": _text()},
            },
        }
    }
    for path, summary, codes in (
        ("/healthz", "The process serves", ("200",)),
        ("/readyz", "Redis and LiveKit reachable (503 names which is not)", ("200", "503")),
    ):
        paths[path] = {
            "get": {
                "summary": summary,
                "responses": {
                    c: {"description": summary, "content": _json({"type": "object"})} for c in codes
                },
            }
        }
    paths |= _console_paths()
    paths["/metrics"] = {
        "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}
    }
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI", "content": _json({"type": "object"})}},
        }
    }
    describe(paths)
    return {
        "openapi": "3.1.0",
        "servers": SERVERS,
        "webhooks": webhooks(defs),
        "info": {
            "title": "roomkeeper",
            "version": __version__,
            "description": "plugNmeet-compatible room API over LiveKit, with durable webhooks. "
            "Every /auth/* request carries API-KEY and HASH-SIGNATURE: the lowercase hex "
            "HMAC-SHA256 of the raw body keyed with the API secret.",
        },
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": SECURITY_SCHEMES
            | {
                "consoleBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "API key and secret, or any user with "
                    "ROOMKEEPER_CONSOLE_PASSWORD",
                },
            },
        },
    }


# path -> (operationId, summary)
CONSOLE_PAGES = {
    "/console/": ("consoleOverview", "Overview"),
    "/console/rooms": ("consoleRooms", "Active rooms"),
    "/console/scheduled": ("consoleScheduled", "Scheduled rooms"),
    "/console/deliveries": ("consoleDeliveries", "Deliveries by state, with attempts"),
    "/console/hosts": ("consoleHosts", "Target hosts: breaker state and rate"),
}
CONSOLE_ACTIONS = {
    "/console/redeliver": ("consoleRedeliver", "Redeliver one delivery (form: csrf, delivery_id)"),
    "/console/redeliver-host": (
        "consoleRedeliverHost",
        "Redeliver every dead delivery of a host (form: csrf, host)",
    ),
    "/console/test": ("consoleTestSend", "Send a webhook_test event (form: csrf, url)"),
}


def _console_paths() -> dict[str, Any]:
    """The operator console: HTML behind HTTP Basic; its forms carry a CSRF token."""
    html = {"text/html": {"schema": {"type": "string"}}}
    denied = {"401": {"description": "no or wrong credentials", "content": _text()}}
    paths: dict[str, Any] = {}
    for path, (operation_id, summary) in CONSOLE_PAGES.items():
        paths[path] = {
            "get": {
                "operationId": operation_id,
                "summary": f"Console: {summary}",
                "security": [{"consoleBasic": []}],
                "responses": {"200": {"description": "HTML", "content": html}} | denied,
            }
        }
    form = {
        "application/x-www-form-urlencoded": {
            "schema": {"type": "object", "additionalProperties": {"type": "string"}}
        }
    }
    for path, (operation_id, summary) in CONSOLE_ACTIONS.items():
        paths[path] = {
            "post": {
                "operationId": operation_id,
                "summary": f"Console: {summary}",
                "security": [{"consoleBasic": []}],
                "requestBody": {"required": True, "content": form},
                "responses": {
                    "200": {"description": "HTML", "content": html},
                    "303": {"description": "done; back to the page"},
                    "403": {"description": "missing or wrong CSRF token", "content": _text()},
                }
                | denied,
            }
        }
    return paths


def _text() -> dict[str, Any]:
    return {"text/plain": {"schema": {"type": "string"}}}


async def openapi(request: web.Request) -> web.Response:
    """Serve the document."""
    return web.json_response(request.app[SPEC])


SPEC = web.AppKey("openapi", dict)


def setup(app: web.Application) -> None:
    """Build the document once and serve it."""
    app[SPEC] = build_spec()
    app.router.add_get("/openapi.json", openapi)
