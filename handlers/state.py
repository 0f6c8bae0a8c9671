"""What the API keeps per app and per request, declared once (typed aiohttp keys)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from worker.deps import Deps
from worker.rooms.inbox import Inbox
from worker.settings import Settings
from worker.webhooks.http1 import Pool

SETTINGS = web.AppKey("settings", Settings)
DEPS = web.AppKey("deps", Deps)
INBOX = web.AppKey("inbox", Inbox)
WEBHOOK_POOL = web.AppKey("webhook_pool", Pool)  # test sends, guarded
DRAINING = web.AppKey("draining", asyncio.Event)  # set on SIGTERM: /readyz answers 503
# The per-request line's logger, bound once: the module's lazy proxy costs a lookup per use.
REQUEST_LOG = web.AppKey("request_log", object)
LOG_FIELDS = web.RequestKey[dict[str, Any]]("log")  # extra fields for the request's log line
