"""Prometheus metrics of this process (the API serves them at /metrics, a worker on its port)."""

from __future__ import annotations

from functools import cache
from typing import Any

from prometheus_client import Counter, Gauge, Histogram


@cache
def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once per label set: `labels()` takes a lock and
    builds the key on every call, once per delivery on the hot path. Only for metrics whose
    label sets are few and never removed."""
    return metric.labels(*labels)


REQUESTS = Counter(
    "roomkeeper_requests_total", "API requests answered", ["route", "status_code", "http_status"]
)
REQUEST_SECONDS = Histogram(
    "roomkeeper_request_seconds",
    "API request latency",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
JOBS = Counter("roomkeeper_jobs_total", "Units of worker work done", ["function", "outcome"])
JOBS_RECOVERED = Counter(
    "roomkeeper_create_jobs_recovered_total",
    "Create jobs found without their arq job (Redis lost writes) and queued again",
)
JOB_SECONDS = Histogram("roomkeeper_job_seconds", "Worker job duration", ["function"])
DELIVERIES = Counter(
    "roomkeeper_webhook_deliveries_total", "Webhook deliveries finished", ["outcome"]
)
ATTEMPTS = Counter(
    "roomkeeper_webhook_attempts_total",
    "Webhook attempts made, by result (2xx..5xx, timeout, refused, error, interrupted)",
    ["result"],
)
ATTEMPT_SECONDS = Histogram(
    "roomkeeper_webhook_attempt_seconds",
    "Webhook attempt latency",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15),
)
DELIVERY_SECONDS = Histogram(
    "roomkeeper_webhook_delivery_seconds",
    "Time from an event's emission to its successful delivery (retries included)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 1800, 7200, 36000),
)
LIVEKIT_CALLS = Counter("roomkeeper_livekit_calls_total", "LiveKit API calls", ["method", "result"])
TIMER_LATENESS = Histogram(
    "roomkeeper_timer_lateness_seconds",
    "How late a room timer fired after its deadline",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
SCHEDULE_LATENESS = Histogram(
    "roomkeeper_schedule_lateness_seconds",
    "How late a scheduled room was created in LiveKit after its time (start_at - lead)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)

# Cluster-wide figures read from Redis when /metrics is scraped.
QUEUE_DEPTH = Gauge(
    "roomkeeper_create_queue_depth", "Room-create jobs accepted and not yet finished"
)
DELIVERIES_BY_STATE = Gauge(
    "roomkeeper_webhook_deliveries_in_state", "Webhook deliveries by current state", ["state"]
)
ACTIVE_ROOMS = Gauge("roomkeeper_active_rooms", "Rooms roomkeeper holds active")
SCHEDULED_ROOMS = Gauge("roomkeeper_scheduled_rooms", "Rooms scheduled for a later start")
BREAKER_TRANSITIONS = Counter(
    "roomkeeper_webhook_breaker_transitions_total",
    "Per-host circuit breakers opened or closed (by this process)",
    ["to"],
)
HELD = Counter(
    "roomkeeper_webhook_held_total",
    "Delivery turns held back without an attempt, by why (breaker, rate)",
    ["why"],
)
BREAKERS_OPEN = Gauge("roomkeeper_webhook_breakers_open", "Target hosts whose breaker is open")
BREAKER_OPEN = Gauge(
    "roomkeeper_webhook_breaker_open", "1 for each target host whose breaker is open", ["host"]
)
