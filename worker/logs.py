"""structlog set-up: JSON lines off a terminal, console on one, context bound per request/job."""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

# Keys whose values must never reach a log line, whatever a caller binds.
_SECRET_KEYS = frozenset(
    {"api_secret", "secret", "authorization", "hash-signature", "token", "password"}
)


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in event:  # values replaced in place: no copy of the line's dict
        if key.lower() in _SECRET_KEYS:
            event[key] = "[redacted]"
    return event


class UtcStamper:
    """`timestamp` as structlog's `TimeStamper(fmt="iso", utc=True)` writes it
    ("2026-12-01T17:21:19.328447Z"), its date and time of day formatted once per second: a
    datetime per line cost more than the rest of the line's processors together."""

    def __init__(self) -> None:
        # (second, its text) as one value: the worker's timer thread logs too, and two fields
        # set one after the other could be read half-updated.
        self.cached: tuple[int, str] = (-1, "")

    def __call__(self, _: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        second = int(now)
        cached = self.cached
        if cached[0] != second:
            text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            cached = self.cached = (second, text)
        prefix = cached[1]
        micro = int((now - second) * 1_000_000)
        # isoformat leaves out a fraction of exactly zero.
        event["timestamp"] = f"{prefix}.{micro:06d}Z" if micro else f"{prefix}Z"
        return event


def _dumps(obj: Any, default: Any = None, **_: Any) -> str:
    return orjson.dumps(obj, default=default, option=orjson.OPT_NON_STR_KEYS).decode()


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Route structlog and the standard library (aiohttp, arq) through one renderer.

    Our own lines take structlog's short path: a level below the threshold is a no-op method
    (nothing is built for it), and a line is rendered by orjson and written straight to stderr,
    without a stdlib LogRecord. Library lines go through the stdlib handler, rendered alike.
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        UtcStamper(),
        _redact,
    ]
    # Plain tracebacks on the console: rich's would print local variables, secrets included.
    # Colours only on a terminal: a console format sent to a file or pipe stays plain text.
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if use_json
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info if use_json else structlog.dev.set_exc_info,
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Our own lines cover requests and jobs; these libraries' per-item lines would double them.
    for noisy in ("aiohttp.access", "arq.worker", "arq.jobs", "livekit"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    """A structlog logger; context bound with `structlog.contextvars` is merged into each line."""
    return structlog.get_logger(name)
