"""A test send: one `webhook_test` event to a URL, now, answered with what the attempt saw.

It goes the way every delivery goes (the same body shape, both signatures, the SSRF-guarded
pool, the same timeout and the same reading of the answer) but is not queued, retried or
logged as a delivery: an operator checking a receiver wants the answer at once.
"""

from __future__ import annotations

import time
from typing import Any

from worker.settings import Settings
from worker.webhooks.attempt import send
from worker.webhooks.bodies import TEST_EVENT, new_event_id, notify_body
from worker.webhooks.engine import USER_AGENT
from worker.webhooks.http1 import Pool
from worker.webhooks.signing import webhook_headers


async def send_test(pool: Pool, settings: Settings, url: str) -> dict[str, Any]:
    """Deliver one signed `webhook_test` to `url`; the outcome as the attempt log shows one."""
    event_id = new_event_id()
    room = {
        "sid": "",
        "room_id": "",
        "empty_timeout": 0,
        "max_participants": 0,
        "creation_time": "0",
        "enabled_codecs": [],
        "metadata": "",
        "num_participants": 0,
    }
    body = notify_body(TEST_EVENT, room, event_id=event_id)
    headers = webhook_headers(
        body=body,
        msg_id=event_id,
        now=int(time.time()),
        api_key=settings.api_key,
        api_secret=settings.api_secret.get_secret_value(),
        keys=settings.webhook_secrets,
        user_agent=USER_AGENT,
    )
    began = time.time()
    result = await send(pool, url, body, headers, timeout=settings.webhook_timeout)
    attempt = result.as_record(began)
    delivered = result.status is not None and 200 <= result.status < 300
    return {"event_id": event_id, "delivered": delivered, "attempt": attempt}
