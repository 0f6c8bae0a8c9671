"""Every long-lived client a process needs, opened and closed in one place.

The API keeps one `Deps` under an `AppKey`; a worker keeps one in arq's ctx. Both are built inside
the running loop (the LiveKit SDK's session must be).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from worker import keys
from worker.arqueue import ArqRedis, arq_pool
from worker.connections import redis_client
from worker.livekit import LiveKit
from worker.queue.schedule import Schedule
from worker.ratelimit import RateLimiter
from worker.replicas import ReplicaWait
from worker.rooms.records import Store
from worker.settings import Settings
from worker.webhooks.engine import Outbox, delivery_schedule


@dataclass
class Deps:
    """Shared clients and the schedules built over them (one `Schedule` object each)."""

    settings: Settings
    redis: Redis
    arq: ArqRedis
    livekit: LiveKit
    store: Store
    outbox: Outbox
    timers: Schedule
    inbound: Schedule
    deliveries: Schedule
    scheduled: Schedule  # rooms waiting for their start time (worker.rooms.scheduled)
    replicas: ReplicaWait

    async def aclose(self) -> None:
        """Close every client this object opened."""
        await self.livekit.aclose()
        await self.arq.aclose()
        await self.redis.aclose()


async def open_deps(settings: Settings) -> Deps:
    """Open Redis, arq's pool and LiveKit for this process."""
    redis = redis_client(settings)
    limiter = RateLimiter(redis, settings.livekit_max_rps)
    deliveries = delivery_schedule(redis, settings)
    return Deps(
        settings=settings,
        redis=redis,
        arq=arq_pool(settings),
        livekit=LiveKit(
            settings.livekit_url,
            settings.livekit_api_key,
            settings.livekit_api_secret.get_secret_value(),
            timeout=settings.livekit_timeout,
            before_call=limiter.wait,
        ),
        store=Store(redis, job_ttl_s=int(settings.job_retention_days * 86400)),
        outbox=Outbox(settings, deliveries),
        timers=Schedule(redis, keys.TIMERS),
        inbound=Schedule(redis, keys.INBOUND),
        deliveries=deliveries,
        scheduled=Schedule(redis, keys.SCHEDULED_ROOMS),
        replicas=ReplicaWait.from_settings(settings),
    )
