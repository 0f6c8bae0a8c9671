"""The idle-room ticker: LiveKit checks every room for its empty/departure timeout each second."""

from __future__ import annotations

import asyncio
import logging

from .config import EmulatorConfig
from .state import State

log = logging.getLogger("emulator.ticker")


async def run_ticker(state: State, config: EmulatorConfig) -> None:
    """Close idle rooms every ``config.tick_interval`` seconds until cancelled."""
    while True:
        # Re-read the interval each time so POST /_emulator/config takes effect immediately.
        await asyncio.sleep(config.tick_interval)
        try:
            closed = state.close_idle_rooms()
        except Exception:  # a bug here must not stop rooms from ever closing again
            log.exception("idle check failed")
            continue
        if closed and config.verbose:
            log.info("closed %d idle room(s)", closed)
