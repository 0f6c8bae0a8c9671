"""Every setting roomkeeper reads, from the environment or a `.env` file, in one typed class.

Nothing else in the project reads `os.environ`. LiveKit's own variable names (`LIVEKIT_URL`,
`LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET`) are used as they are; everything else is `ROOMKEEPER_*`.
"""

from __future__ import annotations

import base64
import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from worker.webhooks.bodies import EVENTS
from worker.webhooks.netguard import IPNetwork, parse_cidrs

DEFAULT_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
DEFAULT_CREATE_RETRY_SCHEDULE = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
DEFAULT_WARNINGS = (300, 60)
DEFAULT_HEALTH_FILE = "/tmp/roomkeeper-worker.health"  # noqa: S108 - a probe's file
DEFAULT_RECORDING_RETRY_SCHEDULE = (2.0, 5.0, 15.0, 30.0, 60.0)

CommaFloats = Annotated[tuple[float, ...], NoDecode]
CommaInts = Annotated[tuple[int, ...], NoDecode]
CommaSecrets = Annotated[tuple[SecretStr, ...], NoDecode]
CommaNetworks = Annotated[tuple[IPNetwork, ...], NoDecode]
CommaStrs = Annotated[tuple[str, ...], NoDecode]


def _split(value: Any) -> Any:
    """A comma-separated list; blank means none, but a blank item (`5,,10`) is a mistake."""
    if isinstance(value, str):
        if not value.strip():
            return ()
        parts = tuple(part.strip() for part in value.split(","))
        if not all(parts):
            raise ValueError("a comma-separated list must not have empty items (as in 5,,10)")
        return parts
    return value


class Settings(BaseSettings):
    """roomkeeper's configuration; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="ROOMKEEPER_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    # LiveKit, under LiveKit's own names.
    livekit_url: str = Field(
        "http://127.0.0.1:7880", validation_alias=AliasChoices("LIVEKIT_URL", "livekit_url")
    )
    livekit_api_key: str = Field(
        validation_alias=AliasChoices("LIVEKIT_API_KEY", "livekit_api_key"), min_length=1
    )
    livekit_api_secret: SecretStr = Field(
        validation_alias=AliasChoices("LIVEKIT_API_SECRET", "livekit_api_secret")
    )
    livekit_timeout: float = Field(5.0, gt=0, description="seconds per LiveKit API call")
    livekit_max_rps: float = Field(0.0, ge=0, description="LiveKit calls per second, 0 = no limit")

    # The plugNmeet-style API.
    api_key: str = Field(min_length=1)
    api_secret: SecretStr
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(1024 * 1024, gt=0)
    create_wait: float = Field(10.0, ge=0, description="seconds a sync create waits for its job")
    bulk_max_rooms: int = Field(1000, ge=1)
    queue_max_depth: int = Field(
        100_000, ge=1, description="creates accepted and not yet finished before back-pressure"
    )

    # Redis (one server, or Sentinel when `redis_sentinels` is set).
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_sentinels: Annotated[tuple[str, ...], NoDecode] = ()
    redis_sentinel_master: str = "mymaster"
    redis_min_replicas: int = Field(
        0, ge=0, description="replicas that must hold a write before the API accepts work"
    )
    redis_min_replicas_timeout: float = Field(
        1.0, gt=0, description="seconds the API waits for those replicas before refusing"
    )

    # Room defaults and lifecycle.
    default_empty_timeout: int = Field(1800, ge=1)
    default_departure_timeout: int = Field(
        60, ge=1, description="seconds LiveKit keeps a room after its last participant left"
    )
    max_room_duration: int = Field(0, ge=0, description="minutes, 0 = no cap")
    session_ending_warnings: CommaInts = DEFAULT_WARNINGS
    reconcile_interval: float = Field(60.0, gt=0)
    past_rooms_retention_days: float = Field(30.0, gt=0)
    job_retention_days: float = Field(7.0, gt=0)
    create_retry_schedule: CommaFloats = DEFAULT_CREATE_RETRY_SCHEDULE
    create_batch_size: int = Field(50, ge=1, le=1000)
    create_concurrency: int = Field(
        32, ge=1, le=1000, description="LiveKit creates one worker process has in flight at once"
    )
    join_token_ttl: int = Field(21600, ge=60, description="seconds a join token is valid")
    schedule_lead: float = Field(
        300.0, ge=0, description="seconds before its start_at a scheduled room is created"
    )
    schedule_max_ahead: float = Field(
        400 * 86400.0, gt=0, description="seconds ahead a start_at may lie (400 days)"
    )
    unknown_rooms: Literal["ignore", "delete"] = Field(
        "ignore", description="what to do with a room_started for a room roomkeeper never had"
    )

    # Recordings (LiveKit Egress).
    recording_output: str = Field(
        "{room_name}-{time}.mp4",
        min_length=1,
        description="file path template, or s3://bucket/key-template?region=..&endpoint=..",
    )
    recording_s3_access_key: str | None = None
    recording_s3_secret: SecretStr | None = None
    recording_retry_schedule: CommaFloats = DEFAULT_RECORDING_RETRY_SCHEDULE

    # Outgoing webhooks.
    webhook_secret: CommaSecrets = Field(min_length=1)
    webhook_url: str | None = None
    webhook_allowed_cidrs: CommaNetworks = ()
    webhook_retry_schedule: CommaFloats = DEFAULT_RETRY_SCHEDULE
    webhook_jitter: float = Field(0.2, ge=0, lt=1)
    webhook_timeout: float = Field(15.0, gt=0)
    webhook_concurrency: int = Field(256, ge=1)
    webhook_retention_days: float = Field(30.0, gt=0)
    webhook_breaker_failures: int = Field(
        20, ge=1, description="consecutive failed attempts to a host that open its breaker"
    )
    webhook_breaker_probe: float = Field(
        30.0, gt=0, description="seconds between probes of a host whose breaker is open"
    )
    webhook_host_rps: float = Field(50.0, ge=0, description="attempts/s per host, 0 = no limit")
    webhook_events: CommaStrs = ()

    # The operator console (/console).
    console_password: SecretStr | None = None

    # Worker process.
    worker_max_jobs: int = Field(20, ge=1)
    job_timeout: float = Field(20.0, gt=0, description="seconds; a killed job re-runs after this")
    shutdown_grace: float = Field(10.0, ge=0)
    shutdown_drain: float = Field(
        2.0, ge=0, description="seconds the API keeps serving after SIGTERM, /readyz 503"
    )
    worker_health_file: str = DEFAULT_HEALTH_FILE
    worker_metrics_port: int = Field(0, ge=0, le=65535, description="0 = no metrics server")

    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="the event loop the API and the worker run on"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator(
        "session_ending_warnings",
        "create_retry_schedule",
        "recording_retry_schedule",
        "webhook_retry_schedule",
        "redis_sentinels",
        "webhook_events",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("webhook_allowed_cidrs", mode="before")
    @classmethod
    def _cidrs(cls, value: Any) -> Any:
        parts = _split(value)
        if isinstance(parts, tuple) and all(isinstance(p, str) for p in parts):
            return parse_cidrs(parts)
        return parts

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _secrets(cls, value: Any) -> Any:
        parts = _split(value)
        for part in parts if isinstance(parts, tuple) else ():
            raw = part.get_secret_value() if isinstance(part, SecretStr) else str(part)
            if not raw.startswith("whsec_"):
                raise ValueError("each secret must start with whsec_")
            try:
                base64.b64decode(raw.removeprefix("whsec_"), validate=True)
            except ValueError:
                raise ValueError("the part after whsec_ must be base64") from None
        return parts

    @field_validator("console_password", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # An empty password must never open the console.
        return None if value == "" else value

    @field_validator("webhook_events")
    @classmethod
    def _events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [e for e in value if e not in EVENTS]
        if unknown:
            raise ValueError(f"unknown event {unknown[0]!r}; known: {', '.join(EVENTS)}")
        return value

    @field_validator("webhook_retry_schedule", "create_retry_schedule", "recording_retry_schedule")
    @classmethod
    def _schedule(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("must list at least one delay")
        if any(v < 0 for v in value):
            raise ValueError("delays must be >= 0 seconds")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            # A bare `host:port` is the usual slip; redis-py would fail later with a traceback.
            raise ValueError(
                "must be a URL such as redis://127.0.0.1:6379/0 (or rediss://, unix://)"
            )
        return value

    @field_validator("recording_output")
    @classmethod
    def _recording_output(cls, value: str) -> str:
        if value.startswith("s3://") and not urlsplit(value).netloc:
            raise ValueError("an s3:// output needs a bucket: s3://bucket/path-template")
        if "://" in value and not value.startswith("s3://"):
            raise ValueError("must be a file path template or an s3://bucket/... location")
        return value

    @field_validator("livekit_url", "webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError("must be an http(s) URL")
        return value or None

    @property
    def bulk_max_body_bytes(self) -> int:
        """createBulk's body limit: sized from its room limit, never below a single route's."""
        return max(self.max_body_bytes, self.bulk_max_rooms * BULK_BYTES_PER_ROOM)

    @property
    def webhook_secrets(self) -> tuple[bytes, ...]:
        """The decoded Standard Webhooks keys, current one first."""
        return tuple(
            base64.b64decode(s.get_secret_value().removeprefix("whsec_"))
            for s in self.webhook_secret
        )


# What one createBulk room may take on the wire: the seed's example is about 1.6 KB, so 8 KiB
# leaves room for long titles and metadata while 1000 rooms stay under 8 MiB.
BULK_BYTES_PER_ROOM = 8 * 1024


class SettingsError(Exception):
    """Configuration that cannot start the service; the message names each bad variable."""


def _env_name(field: str) -> str:
    info = Settings.model_fields.get(field)
    if info is None:  # pydantic reports aliased fields by their alias, already a variable name
        return field.upper()
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"ROOMKEEPER_{field.upper()}"


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning pydantic's error into one naming the variables (never values)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines: list[str] = []
        for err in exc.errors(include_input=False, include_url=False):
            field = str(err["loc"][0]) if err["loc"] else "?"
            msg = "is required (set it in the environment or in .env)"
            if err["type"] != "missing":
                msg = str(err["msg"]).removeprefix("Value error, ")
            line = f"{_env_name(field)}: {msg}"
            if line not in lines:
                lines.append(line)
        raise SettingsError("\n".join(lines)) from None


def setting_names() -> list[str]:
    """Every variable a setting is read from (LiveKit's own names included)."""
    return [_env_name(field) for field in Settings.model_fields]


def unknown_variables(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> list[str]:
    """A warning per `ROOMKEEPER_*` variable that is no setting, naming the nearest one.

    Unknown variables are ignored (so one deployment's file can serve several versions), which
    makes a typo silent: the setting keeps its default. This says so.
    """
    names = set(os.environ if environ is None else environ)
    if env_file is not None and Path(env_file).is_file():
        from dotenv import dotenv_values

        names |= set(dotenv_values(env_file))
    known = setting_names()
    warnings = []
    for name in sorted(n for n in names if n.upper().startswith("ROOMKEEPER_")):
        if name.upper() in known:
            continue
        near = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]}?" if near else ""
        warnings.append(f"{name} is not a roomkeeper setting and is ignored{hint}")
    return warnings


class HealthCheckSettings(BaseSettings):
    """What `roomkeeper worker --check` reads: only the health file, no secrets needed."""

    model_config = SettingsConfigDict(env_prefix="ROOMKEEPER_", env_file=".env", extra="ignore")

    worker_health_file: str = DEFAULT_HEALTH_FILE
