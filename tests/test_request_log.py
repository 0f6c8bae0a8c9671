"""The API's one line per request: written at info with its request id, route, answer and room;
not written at warning."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest

from tests.support.api import Api, minimal_request
from tests.support.procs import api_process, roomkeeper_env
from tests.support.servers import RedisServer

pytestmark = pytest.mark.slow  # an API process per level: about 4 s each


def _request_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for text in output.splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and line.get("event") == "request":
            lines.append(line)
    return lines


@pytest.mark.parametrize("level", ["info", "warning"])
async def test_each_request_gets_one_line_at_info_and_none_at_warning(
    redis_server: RedisServer, level: str
) -> None:
    # No LiveKit call is made for a queued create: the URL is never reached.
    env = roomkeeper_env(redis_server.url, "http://127.0.0.1:9", ROOMKEEPER_LOG_LEVEL=level)
    async with api_process(env) as (url, proc):
        api = Api(url)
        try:
            headers = {"Prefer": "respond-async", "X-Request-Id": f"log-{level}-1"}
            status, body = await api.post(
                "/auth/room/create", minimal_request(f"log-{level}"), headers
            )
            assert status == 202, body
            status, _ = await api.post("/auth/room/nope", {}, {"X-Request-Id": f"log-{level}-2"})
            assert status == 404
        finally:
            await api.close()

        # The line is written (and flushed, to the file the output goes to) before the answer
        # is sent: once the client has both answers, both lines are there, or never will be.
        lines = [
            line
            for line in _request_lines(proc.output())
            if str(line.get("request_id", "")).startswith(f"log-{level}-")
        ]
    if level == "warning":
        assert lines == []
        return
    created, unknown = lines
    assert created["route"] == "/auth/room/create"
    assert (created["method"], created["http_status"]) == ("POST", 202)
    assert (created["status_code"], created["room_id"]) == ("SUCCESS", f"log-{level}")
    assert created["job_id"] == body["job_id"] and created["request_id"] == f"log-{level}-1"
    assert (unknown["http_status"], unknown["status_code"]) == (404, "NOT_FOUND")
    stamped = datetime.fromisoformat(created["timestamp"])
    assert created["timestamp"].endswith("Z") and abs(time.time() - stamped.timestamp()) < 60
