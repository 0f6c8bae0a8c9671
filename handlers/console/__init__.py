"""The operator console under `/console`: HTML pages over the same data as the API.

A sub-application with its own guard: HTTP Basic on every request (401 with a challenge
otherwise), strict security headers, and a CSRF token on every POST.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from handlers.console import pages
from handlers.console.auth import allowed, unauthorized
from handlers.state import SETTINGS

STATIC = Path(__file__).with_name("static")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@web.middleware
async def guard(request: web.Request, handler: pages.Handler) -> web.StreamResponse:
    """Basic auth first, then the page; security headers on every answer."""
    header = request.headers.get("Authorization", "")
    if not allowed(request.config_dict[SETTINGS], header):
        response: web.StreamResponse = unauthorized()
    else:
        request[pages.AUTH] = header
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
    response.headers.update(SECURITY_HEADERS)
    if isinstance(response, web.HTTPException):
        raise response
    return response


def setup(app: web.Application) -> None:
    """Mount the console at /console."""
    console = web.Application(middlewares=[guard])
    console[pages.TEMPLATES] = pages.environment()
    console.router.add_get("/", pages.overview)
    console.router.add_get("/rooms", pages.rooms)
    console.router.add_get("/scheduled", pages.scheduled)
    console.router.add_get("/deliveries", pages.deliveries)
    console.router.add_get("/hosts", pages.hosts)
    console.router.add_post("/redeliver", pages.redeliver_one)
    console.router.add_post("/redeliver-host", pages.redeliver_host)
    console.router.add_post("/test", pages.test_send)
    console.router.add_static("/static", STATIC)
    app.add_subapp("/console", console)
    app.router.add_get("/console", _to_console)


async def _to_console(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect("/console/")
