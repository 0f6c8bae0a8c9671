"""Run the emulator inside the current event loop (tests, benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from aiohttp import web

from .app import CALLS_KEY, FAULTS_KEY, STATE_KEY, WEBHOOKS_KEY, create_app
from .calls import CallLog
from .config import DEFAULT_DEPARTURE_TIMEOUT, DEFAULT_EMPTY_TIMEOUT, EmulatorConfig
from .faults import Faults
from .state import State
from .webhooks import WebhookSender


class Emulator:
    """``async with Emulator(...) as emu:`` serves on ``emu.url`` until the block exits."""

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        webhook_urls: Sequence[str] = (),
        tick_interval: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        departure_timeout: int = DEFAULT_DEPARTURE_TIMEOUT,
        default_empty_timeout: int = DEFAULT_EMPTY_TIMEOUT,
        config: EmulatorConfig | None = None,
        access_log: bool = False,
    ) -> None:
        self.config = config or EmulatorConfig(
            api_key=api_key,
            api_secret=api_secret,
            webhook_urls=list(webhook_urls),
            tick_interval=tick_interval,
            departure_timeout=departure_timeout,
            default_empty_timeout=default_empty_timeout,
        )
        self.host = host
        self.port = port
        self.app = create_app(self.config)
        self._access_log = access_log
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server (the real port when 0 was asked for)."""
        return f"http://{self.host}:{self.port}"

    @property
    def state(self) -> State:
        """Direct read access to rooms and participants."""
        return self.app[STATE_KEY]

    @property
    def calls(self) -> CallLog:
        """The received-call journal."""
        return self.app[CALLS_KEY]

    @property
    def faults(self) -> Faults:
        """The fault queue."""
        return self.app[FAULTS_KEY]

    @property
    def webhooks(self) -> WebhookSender:
        """The webhook sender and its delivery records."""
        return self.app[WEBHOOKS_KEY]

    async def start(self) -> None:
        """Bind and start serving; background tasks start with the app."""
        kwargs: dict[str, Any] = {} if self._access_log else {"access_log": None}
        # A short shutdown grace: in-flight requests (e.g. a latency fault) must not hold a
        # test's teardown for aiohttp's default 60 s.
        runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=1.0, **kwargs)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=1024)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop serving and cancel background tasks."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
