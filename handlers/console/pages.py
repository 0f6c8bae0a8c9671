"""The console's pages and buttons: server-rendered HTML (jinja2), plain forms, no JavaScript.

Every page reads one page of an index; every button is a POST carrying the CSRF token and
answers with a redirect back (303), so a reload never repeats it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from handlers.console.auth import csrf_ok, csrf_token
from handlers.console.data import PAGE, active_rooms, counts, scheduled_rooms
from handlers.state import DEPS, SETTINGS, WEBHOOK_POOL
from worker.keys import deliveries_in_state
from worker.webhooks.engine import ID_PATTERN, STATES
from worker.webhooks.hosts import host_key, list_hosts
from worker.webhooks.log import QUEUED, list_deliveries, redeliver, replay
from worker.webhooks.testsend import send_test

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TEMPLATES = web.AppKey("console_templates", jinja2.Environment)
AUTH = web.RequestKey("console_auth", str)
DELIVERY_PAGE = 25
SCAN_BUDGET = 500


def _when(unix: float | None) -> str:
    if not unix:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))


def environment() -> jinja2.Environment:
    """The templates, autoescaped."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("handlers.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when
    env.filters["clock"] = lambda unix: time.strftime("%H:%M:%S", time.gmtime(unix or 0))
    return env


def render(request: web.Request, name: str, **context: Any) -> web.Response:
    """A page, with what every page needs (CSRF token, flash message, current section)."""
    settings = request.config_dict[SETTINGS]
    template = request.config_dict[TEMPLATES].get_template(name)
    html = template.render(
        csrf=csrf_token(settings, request[AUTH]),
        flash=request.query.get("msg", ""),
        path=request.path,
        **context,
    )
    return web.Response(text=html, content_type="text/html")


def _back(to: str, msg: str) -> web.HTTPSeeOther:
    sep = "&" if "?" in to else "?"
    return web.HTTPSeeOther(f"{to}{sep}{urlencode({'msg': msg})}")


def _offset(request: web.Request) -> int:
    raw = request.query.get("offset", "0")
    return int(raw) if raw.isdigit() and len(raw) < 10 else 0


async def overview(request: web.Request) -> web.Response:
    """The figures, and the test-send form."""
    figures = await counts(request.config_dict[DEPS].redis)
    return render(request, "overview.html", figures=figures)


async def rooms(request: web.Request) -> web.Response:
    """Active rooms with state, participants and the timers still due."""
    deps = request.config_dict[DEPS]
    offset = _offset(request)
    rows, total = await active_rooms(deps, offset)
    return render(
        request,
        "rooms.html",
        rooms=rows,
        total=total,
        offset=offset,
        page=PAGE,
        now=time.time(),
    )


async def scheduled(request: web.Request) -> web.Response:
    """Rooms scheduled ahead, by start time, paged by cursor."""
    cursor = request.query.get("cursor", "")[:600]
    rows, more = await scheduled_rooms(request.config_dict[DEPS], cursor)
    return render(request, "scheduled.html", rooms=rows, more=more)


async def deliveries(request: web.Request) -> web.Response:
    """The delivery log by state (and room), each delivery with its attempts, paged by cursor."""
    query = request.query
    state = query.get("state", "")
    state = state if state in STATES else ""
    room_id = query.get("room_id", "")[:256]
    cursor = query.get("cursor", "")
    # A state the index does not imply reads at most this many records per page ("older" goes on).
    args: dict[str, Any] = {"limit": DELIVERY_PAGE, "scan_budget": SCAN_BUDGET}
    if state:
        args["state"] = state
    if room_id:
        args["room_id"] = room_id
    if ID_PATTERN.fullmatch(cursor):
        args["cursor"] = cursor
    page = await list_deliveries(request.config_dict[DEPS].redis, **args)
    more = None
    if page.next_cursor:
        more = "?" + urlencode(
            {k: v for k, v in (("state", state), ("room_id", room_id)) if v}
            | {"cursor": page.next_cursor}
        )
    return render(
        request,
        "deliveries.html",
        deliveries=page.deliveries,
        state=state,
        room_id=room_id,
        states=STATES,
        more=more,
        here=request.path_qs,
    )


async def hosts(request: web.Request) -> web.Response:
    """Target hosts with their breaker state and rate."""
    deps = request.config_dict[DEPS]
    offset = _offset(request)
    views, total = await list_hosts(deps.redis, deps.settings, limit=PAGE, offset=offset)
    return render(request, "hosts.html", hosts=views, total=total, offset=offset, page=PAGE)


async def _form(request: web.Request) -> dict[str, str]:
    """The posted form, once its CSRF token checks out (else 403)."""
    form = await request.post()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    if not csrf_ok(request.config_dict[SETTINGS], request[AUTH], values.get("csrf", "")):
        raise web.HTTPForbidden(text="403: missing or wrong CSRF token; reload the page\n")
    return values


def _return_to(values: dict[str, str], default: str) -> str:
    to = values.get("back", "")
    return to if to.startswith("/console") and "//" not in to else default


async def redeliver_one(request: web.Request) -> web.Response:
    """The redeliver button of one delivery (a dead one again, a pending one now)."""
    values = await _form(request)
    did = values.get("delivery_id", "")
    back = _return_to(values, "/console/deliveries")
    if not ID_PATTERN.fullmatch(did):
        raise _back(back, "not a delivery id")
    deps = request.config_dict[DEPS]
    result = (await redeliver(deps.redis, deps.outbox, [did]))[did]
    raise _back(back, f"{did}: {result}")


async def redeliver_host(request: web.Request) -> web.Response:
    """Redeliver every dead delivery to one host (bounded per press; press again for more)."""
    values = await _form(request)
    host = values.get("host", "")
    deps = request.config_dict[DEPS]
    done = await replay(
        deps.redis,
        deps.outbox,
        deliveries_in_state("dead"),
        since=0,
        state="dead",
        cursor=values.get("cursor") if ID_PATTERN.fullmatch(values.get("cursor", "")) else None,
        match=lambda rec: host_key(rec.get("url", "")) == host,
    )
    queued = sum(1 for r in done.results.values() if r == QUEUED)
    more = "; more remain, press again" if done.next_cursor else ""
    raise _back("/console/hosts", f"{host}: {queued} dead deliveries queued again{more}")


async def test_send(request: web.Request) -> web.Response:
    """Send a `webhook_test` event now and show what the receiver answered."""
    values = await _form(request)
    url = values.get("url", "").strip()
    outcome = None
    error = ""
    if url.startswith(("http://", "https://")):
        app = request.config_dict
        outcome = await send_test(app[WEBHOOK_POOL], app[SETTINGS], url)
    else:
        error = "url: must be an absolute http(s) URL"
    return render(request, "test.html", url=url, outcome=outcome, error=error)
