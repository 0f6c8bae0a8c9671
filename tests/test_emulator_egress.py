"""The emulator's Egress service behaves like LiveKit's, as seen through `livekit-api`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from livekit import api

from emulator import Emulator
from emulator.app import EGRESS_KEY
from tests.support.api import eventually
from tests.support.servers import Receiver, run_receiver

KEY = "APIemulatoregress"
SECRET = "emulator-egress-secret-that-is-long-enough-for-hs256"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with run_receiver() as rec:
        yield rec


@pytest.fixture
async def emu(receiver: Receiver) -> AsyncIterator[Emulator]:
    async with Emulator(KEY, SECRET, webhook_urls=[receiver.at("/lk")], tick_interval=0.1) as e:
        yield e


@pytest.fixture
async def lk(emu: Emulator) -> AsyncIterator[api.LiveKitAPI]:
    client = api.LiveKitAPI(emu.url, KEY, SECRET)
    yield client
    await client.aclose()


def file_request(room: str, path: str = "recordings/{room_name}-{time}.mp4") -> Any:
    return api.RoomCompositeEgressRequest(
        room_name=room, file_outputs=[api.EncodedFileOutput(filepath=path)]
    )


def egress_events(receiver: Receiver, egress_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in receiver.events()
        if e["event"].startswith("egress_") and e["egressInfo"]["egressId"] == egress_id
    ]


async def test_a_room_composite_egress_starts_stops_and_reports_its_file(
    lk: api.LiveKitAPI, receiver: Receiver
) -> None:
    room = await lk.room.create_room(api.CreateRoomRequest(name="rec"))

    started = await lk.egress.start_room_composite_egress(file_request("rec"))
    assert started.egress_id.startswith("EG_") and started.room_id == room.sid
    assert started.room_name == "rec" and started.status == api.EgressStatus.EGRESS_STARTING
    assert started.started_at > 1_000_000_000_000_000_000  # nanoseconds
    listed = await lk.egress.list_egress(api.ListEgressRequest(room_name="rec", active=True))
    assert [i.egress_id for i in listed.items] == [started.egress_id]
    stopped = await lk.egress.stop_egress(api.StopEgressRequest(egress_id=started.egress_id))
    assert stopped.status == api.EgressStatus.EGRESS_ENDING

    await eventually(
        lambda: _async(len(egress_events(receiver, started.egress_id)) == 4), what="4 events"
    )
    events = egress_events(receiver, started.egress_id)
    assert [e["event"] for e in events] == [
        "egress_started",
        "egress_updated",
        "egress_updated",
        "egress_ended",
    ]
    assert "status" not in events[0]["egressInfo"]  # EGRESS_STARTING is 0: protojson omits it
    assert [e["egressInfo"].get("status") for e in events[1:]] == [
        "EGRESS_ACTIVE",
        "EGRESS_ENDING",
        "EGRESS_COMPLETE",
    ]
    result = events[-1]["egressInfo"]["fileResults"][0]
    assert result["filename"].startswith("recordings/rec-") and result["filename"].endswith(".mp4")
    assert result["location"] == result["filename"] and int(result["size"]) > 0
    final = await lk.egress.list_egress(api.ListEgressRequest(egress_id=started.egress_id))
    assert final.items[0].status == api.EgressStatus.EGRESS_COMPLETE
    assert final.items[0].file_results[0].size == int(result["size"])
    with pytest.raises(api.TwirpError) as again:
        await lk.egress.stop_egress(api.StopEgressRequest(egress_id=started.egress_id))
    assert again.value.code == "failed_precondition"


async def _async(value: Any) -> Any:
    return value


async def test_egress_joins_as_a_dependent_participant_that_keeps_no_room_open(
    lk: api.LiveKitAPI, emu: Emulator
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="lonely", empty_timeout=1))
    started = await lk.egress.start_room_composite_egress(file_request("lonely"))
    participant = emu.state.rooms["lonely"].participants[started.egress_id]
    assert participant.kind == api.ParticipantInfo.Kind.EGRESS
    assert participant.permission.recorder and participant.permission.hidden
    assert emu.state.rooms["lonely"].proto.num_participants == 0

    await eventually(lambda: _async("lonely" not in emu.state.rooms), what="room closed")
    final = await lk.egress.list_egress(api.ListEgressRequest(egress_id=started.egress_id))
    assert final.items[0].status == api.EgressStatus.EGRESS_COMPLETE  # ended with its room


async def test_egress_events_are_queued_per_egress_and_end_with_the_room(
    lk: api.LiveKitAPI, emu: Emulator, receiver: Receiver
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="late"))
    started = await lk.egress.start_room_composite_egress(file_request("late"))

    await lk.room.delete_room(api.DeleteRoomRequest(room="late"))

    await eventually(
        lambda: _async(any(e["event"] == "egress_ended" for e in receiver.events())),
        what="egress_ended",
    )
    queues = {r.event: r.queue for r in emu.webhooks.list_records(room="late")}
    # Separate FIFOs (LiveKit's per-egress queue): nothing orders egress_ended after the room's
    # room_finished, so a receiver may get it later than room_finished, or before.
    assert queues["room_finished"] == "late"
    assert queues["egress_started"] == queues["egress_ended"] == started.egress_id
    ended = [e for e in egress_events(receiver, started.egress_id) if e["event"] == "egress_ended"]
    assert ended[0]["egressInfo"]["status"] == "EGRESS_COMPLETE"
    assert int(ended[0]["egressInfo"]["fileResults"][0]["size"]) > 0


async def test_egress_needs_the_room_record_grant_and_an_existing_room(
    lk: api.LiveKitAPI, emu: Emulator
) -> None:
    with pytest.raises(api.TwirpError) as missing:
        await lk.egress.start_room_composite_egress(file_request("nowhere"))
    assert missing.value.code == "not_found"
    assert missing.value.message == "requested room does not exist"

    await lk.room.create_room(api.CreateRoomRequest(name="guarded"))
    grants = api.VideoGrants(room_create=True, room_admin=True, room="guarded")
    token = api.AccessToken(KEY, SECRET).with_grants(grants).to_jwt()
    body = json.dumps({"room_name": "guarded", "file_outputs": [{"filepath": "x.mp4"}]})
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{emu.url}/twirp/livekit.Egress/StartRoomCompositeEgress",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        ) as resp,
    ):
        assert resp.status == 401
        assert await resp.json() == {"code": "unauthenticated", "msg": "permissions denied"}
    assert emu.app[EGRESS_KEY].egresses == {}


async def test_failures_come_from_the_control_api(
    lk: api.LiveKitAPI, emu: Emulator, receiver: Receiver
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="flaky"))
    async with aiohttp.ClientSession() as http:
        fault = {"method": "StartRoomCompositeEgress", "code": "unavailable"}
        async with http.post(f"{emu.url}/_emulator/faults", json=fault) as resp:
            assert resp.status == 200
        with pytest.raises(api.TwirpError) as refused:
            await lk.egress.start_room_composite_egress(file_request("flaky"))
        assert refused.value.code == "unavailable"

        async with http.post(
            f"{emu.url}/_emulator/egress/fail-next", json={"error": "no encoder"}
        ) as resp:
            assert resp.status == 200
        failed = await lk.egress.start_room_composite_egress(file_request("flaky"))
        ended = await eventually(
            lambda: _async(
                [
                    e
                    for e in egress_events(receiver, failed.egress_id)
                    if e["event"] == "egress_ended"
                ]
            )
        )
        assert ended[0]["egressInfo"]["status"] == "EGRESS_FAILED"
        assert ended[0]["egressInfo"]["error"] == "no encoder"

        running = await lk.egress.start_room_composite_egress(file_request("flaky"))
        async with http.post(
            f"{emu.url}/_emulator/egress/{running.egress_id}/end",
            json={"status": "EGRESS_ABORTED", "error": "source closed"},
        ) as resp:
            assert resp.status == 200
            assert (await resp.json())["egress"]["status"] == "EGRESS_ABORTED"


async def test_a_stream_egress_reports_its_stream_results(
    lk: api.LiveKitAPI, receiver: Receiver
) -> None:
    await lk.room.create_room(api.CreateRoomRequest(name="live"))
    req = api.RoomCompositeEgressRequest(
        room_name="live", stream_outputs=[api.StreamOutput(urls=["rtmp://127.0.0.1/live/key"])]
    )
    started = await lk.egress.start_room_composite_egress(req)
    assert [s.url for s in started.stream_results] == ["rtmp://127.0.0.1/live/key"]
    await lk.egress.stop_egress(api.StopEgressRequest(egress_id=started.egress_id))
    ended = await eventually(
        lambda: _async(
            [e for e in egress_events(receiver, started.egress_id) if e["event"] == "egress_ended"]
        )
    )
    assert ended[0]["egressInfo"]["streamResults"][0]["status"] == "FINISHED"
