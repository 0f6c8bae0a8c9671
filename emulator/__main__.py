"""``python -m emulator``: run the LiveKit emulator as a standalone server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import jwt.warnings

from . import persist
from .config import EmulatorConfig
from .server import Emulator


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; key and secret default to LIVEKIT_API_KEY / LIVEKIT_API_SECRET."""
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7880)
    parser.add_argument("--api-key", default=os.environ.get("LIVEKIT_API_KEY"))
    parser.add_argument("--api-secret", default=os.environ.get("LIVEKIT_API_SECRET"))
    parser.add_argument(
        "--webhook-url", action="append", default=[], help="repeat for several URLs"
    )
    parser.add_argument("--tick-interval", type=float, default=1.0)
    parser.add_argument("--departure-timeout", type=int, default=20)
    parser.add_argument("--empty-timeout", type=int, default=300)
    parser.add_argument("--verbose", action="store_true", help="log every request and webhook")
    parser.add_argument(
        "--state-file", type=Path, default=None, help="keep rooms across restarts in this file"
    )
    args = parser.parse_args(argv)
    if not args.api_key or not args.api_secret:
        parser.error("--api-key/--api-secret (or LIVEKIT_API_KEY/LIVEKIT_API_SECRET) required")
    return args


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGINT or SIGTERM."""
    config = EmulatorConfig(
        api_key=args.api_key,
        api_secret=args.api_secret,
        webhook_urls=list(args.webhook_url),
        tick_interval=args.tick_interval,
        departure_timeout=args.departure_timeout,
        default_empty_timeout=args.empty_timeout,
        verbose=args.verbose,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    emulator = Emulator(
        config.api_key,
        config.api_secret,
        host=args.host,
        port=args.port,
        config=config,
        access_log=args.verbose,
    )
    if args.state_file is not None:
        restored = persist.load(emulator.state, args.state_file)
        if restored:
            print(f"LiveKit emulator: {restored} rooms restored from {args.state_file}", flush=True)
    async with emulator:
        print(f"LiveKit emulator listening on {emulator.url}", flush=True)
        await stop.wait()
    if args.state_file is not None:
        persist.save(emulator.state, args.state_file)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # Dev setups often use LiveKit's short demo secrets; PyJWT would warn on every token.
    warnings.filterwarnings("ignore", category=jwt.warnings.InsecureKeyLengthWarning)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
