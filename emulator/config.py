"""Emulator configuration: one mutable object shared by every component.

It is mutable on purpose: ``POST /_emulator/config`` changes webhook URLs, the tick interval
and the default departure timeout of a running emulator, and every component reads the
current value at the moment it needs it instead of copying it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# LiveKit's server defaults (pkg/config/config.go, RoomConfig and LimitConfig).
DEFAULT_EMPTY_TIMEOUT = 300
DEFAULT_DEPARTURE_TIMEOUT = 20
MAX_ROOM_NAME_LENGTH = 256
MAX_METADATA_SIZE = 512 * 1024

# livekit/protocol webhook.DefaultResourceURLNotifierConfig and go-retryablehttp's RetryMax=4.
WEBHOOK_MAX_AGE = 30.0
WEBHOOK_MAX_DEPTH = 200
WEBHOOK_MAX_ATTEMPTS = 5


@dataclass
class EmulatorConfig:
    """Everything the emulator needs to know; defaults match a stock LiveKit server."""

    api_key: str
    api_secret: str
    webhook_urls: list[str] = field(default_factory=list)
    tick_interval: float = 1.0
    departure_timeout: int = DEFAULT_DEPARTURE_TIMEOUT
    default_empty_timeout: int = DEFAULT_EMPTY_TIMEOUT
    # Webhook delivery. LiveKit waits 1 s, 2 s, 4 s... between attempts; the emulator keeps
    # the same shape with a shorter base so retries show up within a test's time budget.
    webhook_max_attempts: int = WEBHOOK_MAX_ATTEMPTS
    webhook_retry_backoff: float = 0.1
    webhook_retry_backoff_max: float = 2.0
    webhook_timeout: float = 10.0
    webhook_max_age: float = WEBHOOK_MAX_AGE
    webhook_max_depth: int = WEBHOOK_MAX_DEPTH
    # Inspection logs are ring buffers so a long benchmark cannot grow memory without bound.
    max_records: int = 100_000
    verbose: bool = False

    def public_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data, without the API secret."""
        return {
            "api_key": self.api_key,
            "webhook_urls": list(self.webhook_urls),
            "tick_interval": self.tick_interval,
            "departure_timeout": self.departure_timeout,
            "default_empty_timeout": self.default_empty_timeout,
            "webhook_max_attempts": self.webhook_max_attempts,
            "webhook_retry_backoff": self.webhook_retry_backoff,
            "webhook_retry_backoff_max": self.webhook_retry_backoff_max,
            "webhook_timeout": self.webhook_timeout,
            "webhook_max_age": self.webhook_max_age,
            "webhook_max_depth": self.webhook_max_depth,
            "max_records": self.max_records,
            "verbose": self.verbose,
        }
