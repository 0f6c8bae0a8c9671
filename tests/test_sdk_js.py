"""Through plugNmeet's JavaScript SDK (plugnmeet-sdk-js 1.4.1 from npm, run by node), end to end.

`make js-sdk` (a prerequisite of `make test`) installs it into tests/js/node_modules.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import API_KEY, API_SECRET, livekit_rooms, seed_request
from tests.support.servers import Receiver
from tests.support.stack import Stack

pytestmark = pytest.mark.slow  # real processes or injected faults

JS = Path(__file__).parent / "js"
NODE = "/usr/bin/node" if Path("/usr/bin/node").exists() else "node"


async def js_sdk(url: str, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run `calls` through the JS SDK in one node process; the SDK's answers in order."""
    assert (JS / "node_modules" / "plugnmeet-sdk-js").is_dir(), "run `make js-sdk` first"
    env = {**os.environ, "PLUGNMEET_API_KEY": API_KEY, "PLUGNMEET_API_SECRET": API_SECRET}
    proc = await asyncio.create_subprocess_exec(
        NODE,
        str(JS / "sdk_calls.js"),
        url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=JS,
    )
    out, err = await asyncio.wait_for(proc.communicate(json.dumps(calls).encode()), 60)
    assert proc.returncode == 0, err.decode()
    answers: list[dict[str, Any]] = json.loads(out)
    return answers


async def test_js_sdk_runs_every_room_call_end_to_end(stack: Stack, receiver: Receiver) -> None:
    params = seed_request("js-room", webhook_url=receiver.at("/hook"))
    params["metadata"]["room_features"]["breakout_room_features"]["allowed_number_rooms"] = 0
    user = {"name": "Alice", "user_id": "u1", "is_admin": True}

    created, active, info, infos, token = await js_sdk(
        stack.url,
        [
            {"method": "createRoom", "params": params},
            {"method": "isRoomActive", "params": {"room_id": "js-room"}},
            {"method": "getActiveRoomInfo", "params": {"room_id": "js-room"}},
            {"method": "getActiveRoomsInfo"},
            {"method": "getJoinToken", "params": {"room_id": "js-room", "user_info": user}},
        ],
    )

    assert created["status"] is True and created["msg"] == "success", created
    room_info = created["room_info"]
    assert room_info["name"] == "js-room" and room_info["room_id"] == "js-room"
    assert room_info["sid"] == (await livekit_rooms(stack.emulator.url))["js-room"]["sid"]
    breakout = json.loads(room_info["metadata"])["room_features"]["breakout_room_features"]
    assert breakout == {"is_allow": True, "allowed_number_rooms": 6}  # 0 = plugNmeet's default
    assert active["status"] is True
    assert info["room"]["room_info"]["sid"] == room_info["sid"]
    assert [r["room_info"]["room_id"] for r in infos["rooms"]] == ["js-room"]
    assert token["status"] is True and token["token"].count(".") == 2
    await receiver.wait_for(lambda r: any(x.json["event"] == "room_created" for x in r), timeout=15)

    ended, past = await js_sdk(
        stack.url,
        [
            {"method": "endRoom", "params": {"room_id": "js-room"}},
            {"method": "fetchPastRoomsInfo", "params": {"room_ids": ["js-room"]}},
        ],
    )
    assert ended["status"] is True, ended
    assert [r["room_id"] for r in past["result"]["rooms_list"]] == ["js-room"]


async def test_a_route_roomkeeper_lacks_reaches_the_js_sdk_as_a_message(stack: Stack) -> None:
    (analytics,) = await js_sdk(stack.url, [{"method": "fetchAnalytics", "params": {}}])

    assert analytics["status"] is False
    assert analytics["msg"] == (
        "/auth/analytics/fetch: roomkeeper does not serve this route "
        "(its /auth routes are listed in /openapi.json)"
    )
