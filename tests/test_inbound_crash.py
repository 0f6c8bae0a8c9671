"""A worker SIGKILLed again and again while it applies backlogs of LiveKit events (several per
transaction): every event is applied once, in arrival order per room, and forwarded."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from typing import Any

import pytest
from google.protobuf.json_format import MessageToJson
from livekit import api
from redis.asyncio import Redis

from emulator.server import Emulator
from tests.support.api import LK_KEY, LK_SECRET, Api, eventually, minimal_request
from tests.support.procs import roomkeeper_env, worker_process
from tests.support.servers import Receiver, RedisServer
from tests.support.stack import make_settings, run_api
from tests.test_livekit_webhook import post_webhook, token_for
from worker import keys
from worker.queue.schedule import DEFAULT_LEASE_MS

pytestmark = pytest.mark.slow  # real worker processes, killed

ROOMS, EVENTS, KILLS = 6, 80, 2  # several transactions per room: kills land inside a backlog
# A killed worker's rooms fall due again when their leases run out (the `in` schedule's).
TAKEOVER_S = DEFAULT_LEASE_MS / 1000 + 15
WHO = ("ann", "ben", "cat", "dan")


def script_of(seed: int) -> list[tuple[str, str, int]]:
    """(event, identity, the count it must be forwarded with), by the rules of a live room:
    a join counts an identity not yet in, a leave one that is in."""
    rng = random.Random(seed)
    inside: set[str] = set()
    out = []
    for _ in range(EVENTS):
        who = rng.choice(WHO)
        kind = rng.choice(("participant_joined", "participant_left"))
        if kind == "participant_joined":
            inside.add(who)
        else:
            inside.discard(who)
        out.append((kind, who, len(inside)))
    return out


def signed_event(room: dict[str, Any], n: int, kind: str, who: str) -> str:
    return MessageToJson(
        api.WebhookEvent(
            event=kind,
            id=f"EV_{room['name']}_{n:04d}",
            created_at=int(time.time()),
            room=api.Room(sid=room["sid"], name=room["name"]),
            participant=api.ParticipantInfo(sid=f"PA_{who}", identity=who, state=2),
        )
    )


async def queued(redis: Redis) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(ROOMS):
            pipe.llen(keys.schedule_list(keys.INBOUND, f"crash-{i}"))
        return sum(await pipe.execute())


async def test_a_worker_killed_while_applying_event_backlogs_applies_each_once_in_order(
    redis_server: RedisServer, redis: Redis, receiver: Receiver
) -> None:
    async with Emulator(LK_KEY, LK_SECRET, tick_interval=3600) as emu:
        env = roomkeeper_env(redis_server.url, emu.url)
        settings = make_settings(redis_server.url, emu.url)
        async with run_api(settings) as url:
            api_client = Api(url)
            rooms = []
            async with worker_process(env, "creator"):
                for i in range(ROOMS):
                    created = await api_client.create(
                        minimal_request(f"crash-{i}", webhook_url=receiver.at("/hook"))
                    )
                    rooms.append(created["room_info"])
            scripts = {room["name"]: script_of(i) for i, room in enumerate(rooms)}

            # Every room's whole backlog is queued while no worker runs (rooms side by side,
            # each room's events one after the other: their order is the arrival order).
            async def post_all(room: dict[str, Any]) -> None:
                for n, (kind, who, _) in enumerate(scripts[room["name"]]):
                    body = signed_event(room, n, kind, who)
                    status = await post_webhook(url, body, {"Authorization": token_for(body)})
                    assert status == 200

            await asyncio.gather(*(post_all(room) for room in rooms))
            total = await queued(redis)
            assert total == ROOMS * EVENTS
            for i in range(KILLS):
                async with worker_process(env, f"victim-{i}") as victim:
                    left = await queued(redis)
                    await eventually(
                        lambda left=left: _fewer(redis, left), timeout=TAKEOVER_S, what="progress"
                    )
                    victim.signal(signal.SIGKILL)
                    victim.wait(10)
            killed_with = await queued(redis)
            async with worker_process(env, "survivor"):
                await eventually(
                    lambda: _drained(redis), timeout=TAKEOVER_S + 30, what="every event applied"
                )
                await receiver.wait_for(
                    lambda r: len(_firsts(receiver)) == ROOMS * EVENTS, timeout=60
                )
            await api_client.close()

    firsts = _firsts(receiver)
    for room in rooms:
        name = room["name"]
        got = [(e["event"], e["participant"]["identity"], e["room"]["num_participants"])
               for e in firsts if e["room"]["room_id"] == name]  # fmt: skip
        assert got == scripts[name], name
        final = scripts[name][-1][2]
        assert await redis.hget(keys.room(name), "participants") == str(final)
        inside = {who for who in WHO if _inside_at_end(scripts[name], who)}
        assert await redis.smembers(keys.members(room["sid"])) == inside
    print(
        f"\nfault: worker SIGKILLed {KILLS}x while applying {total} queued LiveKit events "
        f"({killed_with} still queued after the kills): each applied once, in order"
    )


def _inside_at_end(script: list[tuple[str, str, int]], who: str) -> bool:
    kinds = [kind for kind, identity, _ in script if identity == who]
    return bool(kinds) and kinds[-1] == "participant_joined"


def _firsts(receiver: Receiver) -> list[dict[str, Any]]:
    """Participant events received, each once (a redelivery repeats its webhook-id), in the
    order of their first arrival."""
    seen: set[str] = set()
    out = []
    for hit in receiver.received:
        if hit.json["event"] not in ("participant_joined", "participant_left"):
            continue
        if hit.headers["webhook-id"] not in seen:
            seen.add(hit.headers["webhook-id"])
            out.append(hit.json)
    return out


async def _fewer(redis: Redis, before: int) -> bool:
    return await queued(redis) < before


async def _drained(redis: Redis) -> bool:
    return await queued(redis) == 0 and await redis.zcard(keys.schedule_due(keys.INBOUND)) == 0
