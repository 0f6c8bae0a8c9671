"""Why a session ended, as a fixed code plus words; a warning longer than the room comes at once."""

from __future__ import annotations

from typing import Any

from livekit import api

from emulator.server import Emulator
from tests.support.api import LK_KEY, LK_SECRET, minimal_request
from tests.support.servers import Receiver, RedisServer
from tests.support.stack import Stack, make_settings, run_stack
from worker.webhooks.events import END_REASONS


def ended_event(receiver: Receiver, room_id: str) -> dict[str, Any] | None:
    return next(
        (
            e
            for e in receiver.events()
            if e["event"] == "session_ended" and e["room"]["room_id"] == room_id
        ),
        None,
    )


async def test_session_ended_reason_is_a_code_with_a_human_reason_text(
    stack: Stack, receiver: Receiver
) -> None:
    await stack.api.create(minimal_request("by-api", webhook_url=receiver.at("/hook")))
    await stack.api.create(minimal_request("by-livekit", webhook_url=receiver.at("/hook")))

    status, answer = await stack.api.post("/auth/room/endRoom", {"room_id": "by-api"})
    assert status == 200 and answer["status"] is True, answer
    async with api.LiveKitAPI(stack.emulator.url, LK_KEY, LK_SECRET) as lk:
        # Deleted behind roomkeeper's back: LiveKit's room_finished is what ends the session.
        await lk.room.delete_room(api.DeleteRoomRequest(room="by-livekit"))

    await receiver.wait_for(lambda r: ended_event(receiver, "by-livekit") is not None)
    await receiver.wait_for(lambda r: ended_event(receiver, "by-api") is not None)
    by_api, by_livekit = ended_event(receiver, "by-api"), ended_event(receiver, "by-livekit")
    assert by_api is not None and by_livekit is not None
    assert (by_api["reason"], by_livekit["reason"]) == ("ended_by_api", "livekit_finished")
    assert by_api["reason_text"] == END_REASONS["ended_by_api"]
    assert by_livekit["reason_text"] == END_REASONS["livekit_finished"]
    assert set(END_REASONS) == {
        "empty_timeout",
        "room_duration",
        "ended_by_api",
        "livekit_finished",
        "reconciled",
    }


async def test_a_duration_shorter_than_a_warning_gets_that_warning_at_once(
    redis_server: RedisServer, receiver: Receiver
) -> None:
    async with Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu:
        settings = make_settings(redis_server.url, emu.url, session_ending_warnings="300,60")
        async with run_stack(settings, emu) as stack:
            request = minimal_request("short", webhook_url=receiver.at("/hook"))
            request["metadata"]["room_features"] = {"room_duration": 1}
            created = await stack.api.create(request)

            # Waited for well under the minute: the warning must come before the end, not at it.
            await receiver.wait_for(
                lambda r: any(e["event"] == "session_ending" for e in receiver.events()),
                timeout=20,
            )

            warnings = [e for e in receiver.events() if e["event"] == "session_ending"]
            creation = created["room_info"]["creation_time"]
            # Both offsets are at least the whole minute: one warning, now, saying what is left.
            assert [w["seconds_left"] for w in warnings] == [60]
            assert warnings[0]["ends_at"] == str(creation + 60)
