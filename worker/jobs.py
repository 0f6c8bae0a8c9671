"""arq job functions: thin orchestration over the plain async code in `worker.create`."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from typing import Any

import structlog

from worker.create import create_batch
from worker.deps import Deps
from worker.logs import get_logger
from worker.metrics import JOB_SECONDS, JOBS

log = get_logger("roomkeeper.jobs")

CREATE_ROOMS = "create_rooms"


async def enqueue_create(
    deps: Deps, job_ids: list[str], *, defer_by: float | None = None, arq_job_id: str | None = None
) -> None:
    """Queue one arq job creating the rooms of `job_ids`."""
    await deps.arq.enqueue_job(
        CREATE_ROOMS,
        job_ids,
        _job_id=arq_job_id or f"create:{uuid.uuid4().hex}",
        _defer_by=defer_by,
    )


async def create_rooms(ctx: dict[str, Any], job_ids: list[str]) -> int:
    """Create a batch of rooms; rooms LiveKit could not take yet go back as deferred batches."""
    deps: Deps = ctx["deps"]
    started = time.perf_counter()
    with structlog.contextvars.bound_contextvars(arq_job=ctx.get("job_id"), rooms=len(job_ids)):
        retries = await create_batch(deps, job_ids)
        by_delay: dict[float, list[str]] = defaultdict(list)
        for retry in retries:
            by_delay[retry.delay].append(retry.job_id)
        for delay, ids in by_delay.items():
            await enqueue_create(deps, ids, defer_by=delay)
        elapsed = time.perf_counter() - started
        JOB_SECONDS.labels(CREATE_ROOMS).observe(elapsed)
        JOBS.labels(CREATE_ROOMS, "retrying" if retries else "ok").inc()
        log.info(
            "job done",
            function=CREATE_ROOMS,
            retrying=len(retries),
            duration_ms=round(elapsed * 1000, 1),
        )
    return len(job_ids) - len(retries)
