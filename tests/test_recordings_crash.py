"""A recording outlives a worker SIGKILLed while its egress runs: its end events still arrive."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from livekit import api
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import LK_KEY, LK_SECRET, Api, emulator, eventually, minimal_request
from tests.support.procs import api_process, roomkeeper_env, worker_process
from tests.support.servers import Receiver, RedisServer
from worker import keys

pytestmark = pytest.mark.slow  # real processes or injected faults


def names(receiver: Receiver) -> list[str]:
    return [e["event"] for e in receiver.events("/hook")]


async def _async(value: Any) -> Any:
    return value


async def _delivered(emu: Emulator, event: str) -> bool:
    records = (await emulator(emu.url, f"webhooks?room=kept&event={event}"))["webhooks"]
    return any(r["delivered"] for r in records)


async def _idle(redis: Redis) -> bool:
    return await redis.llen(
        keys.schedule_list(keys.INBOUND, "kept")
    ) == 0 and not await redis.zscore(keys.schedule_due(keys.INBOUND), "kept")


async def test_a_worker_killed_while_an_egress_runs_still_delivers_its_end_events(
    redis_server: RedisServer, redis: Redis, receiver: Receiver
) -> None:
    async with Emulator(LK_KEY, LK_SECRET, tick_interval=0.2) as emu:
        env = roomkeeper_env(redis_server.url, emu.url)
        async with api_process(env) as (url, _):
            await emulator(emu.url, "config", "POST", {"webhook_urls": [f"{url}/webhook"]})
            client = Api(url)
            lk = api.LiveKitAPI(emu.url, LK_KEY, LK_SECRET)
            try:
                async with worker_process(env, "doomed") as doomed:
                    await client.create(minimal_request("kept", webhook_url=receiver.at("/hook")))
                    req = api.RoomCompositeEgressRequest(
                        room_name="kept", file_outputs=[api.EncodedFileOutput(filepath="k.mp4")]
                    )
                    egress = await lk.egress.start_room_composite_egress(req)
                    await eventually(
                        lambda: _async("start_recording" in names(receiver)), what="started"
                    )
                    # Killed idle, between events (one killed mid-event holds its room's queue
                    # for the 30 s lease; that path is the inbound tests' business).
                    await eventually(lambda: _idle(redis), what="inbound queue drained")
                    doomed.signal(signal.SIGKILL)
                    doomed.wait(10)

                # With no worker: the API ends the session, LiveKit ends the egress with it and
                # its events are accepted at /webhook, to wait for a worker.
                _, ended = await client.post("/auth/room/endRoom", {"room_id": "kept"})
                assert ended["status"], ended
                await eventually(lambda: _delivered(emu, "egress_ended"), what="egress_ended in")
                assert "end_recording" not in names(receiver)

                async with worker_process(env, "heir"):
                    await eventually(
                        lambda: _async("recording_proceeded" in names(receiver)),
                        timeout=20,
                        what="recording_proceeded from the new worker",
                    )
            finally:
                await lk.aclose()
                await client.close()

    order = names(receiver)
    assert order.index("session_ended") < order.index("end_recording")
    assert order.index("end_recording") < order.index("recording_proceeded")
    assert order.count("end_recording") == order.count("recording_proceeded") == 1
    done = [e for e in receiver.events("/hook") if e["event"] == "recording_proceeded"]
    assert done[0]["recording_info"]["record_id"] == egress.egress_id
    assert done[0]["recording_info"]["file_path"] == "k.mp4"
    print(
        f"fault: worker SIGKILLed during egress {egress.egress_id}; end events delivered: {order}"
    )
