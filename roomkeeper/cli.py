"""The `roomkeeper` command: `api`, `worker`, `dev`, `create-rooms`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from worker import __version__
from worker.settings import Settings, SettingsError, load_settings, unknown_variables


def _warn_unknown_variables() -> None:
    for warning in unknown_variables():
        print(f"roomkeeper: warning: {warning}", file=sys.stderr)


def _settings() -> Settings:
    """The settings, or one line per bad variable on stderr and exit status 2 (no traceback)."""
    _warn_unknown_variables()
    try:
        return load_settings()
    except SettingsError as exc:
        for line in str(exc).splitlines():
            print(f"roomkeeper: invalid configuration: {line}", file=sys.stderr)
        raise SystemExit(2) from None


def run_api(args: argparse.Namespace) -> int:
    """Serve the HTTP API until SIGINT/SIGTERM (see `handlers.serve` for the shutdown order)."""
    from handlers.serve import serve
    from worker.logs import configure_logging
    from worker.loop import run

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    run(serve(settings, host, port), settings.event_loop)
    return 0


def run_worker(args: argparse.Namespace) -> int:
    """Run one arq worker with the schedule consumers until SIGINT/SIGTERM."""
    if args.check:
        # A liveness probe runs where the secrets may not be mounted: it reads only the file.
        from worker.main import check_health
        from worker.settings import HealthCheckSettings

        _warn_unknown_variables()
        return int(check_health(HealthCheckSettings().worker_health_file))
    from worker.main import run

    return int(run(_settings()))


def run_dev(args: argparse.Namespace) -> int:
    """Start Redis, the LiveKit emulator, the API and a worker locally."""
    from roomkeeper.dev import main as dev_main

    return int(dev_main(args))


def run_create_rooms(args: argparse.Namespace) -> int:
    """Bulk-create rooms from a CSV or JSON Lines file through the API."""
    from roomkeeper.bulkclient import main as bulk_main

    try:
        return int(asyncio.run(bulk_main(args)))
    except KeyboardInterrupt:  # before the run began (while reading the file): nothing sent
        print("roomkeeper create-rooms: interrupted; nothing was sent", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="roomkeeper", description=__doc__)
    parser.add_argument("--version", action="version", version=f"roomkeeper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    api = sub.add_parser("api", help="serve the plugNmeet-compatible API")
    api.add_argument("--host", default=None, help="listen address (default ROOMKEEPER_HOST)")
    api.add_argument("--port", type=int, default=None, help="port (default ROOMKEEPER_PORT)")
    api.set_defaults(func=run_api)

    worker = sub.add_parser("worker", help="run a worker (create jobs, timers, webhooks)")
    worker.add_argument(
        "--check", action="store_true", help="exit 0 if a worker reported healthy recently"
    )
    worker.set_defaults(func=run_worker)

    dev = sub.add_parser(
        "dev", help="run everything locally (Redis, LiveKit emulator, API, worker)"
    )
    dev.add_argument("--port", type=int, default=8080, help="API port")
    dev.add_argument("--livekit-port", type=int, default=7880, help="emulator port")
    dev.add_argument("--redis-port", type=int, default=6390, help="local redis-server port")
    dev.add_argument("--receiver-port", type=int, default=8099, help="demo webhook receiver port")
    dev.add_argument(
        "--keep",
        action="store_true",
        help="keep this port set's rooms and Redis data from the last run (default: start clean)",
    )
    dev.set_defaults(func=run_dev)

    bulk = sub.add_parser(
        "create-rooms",
        help="create rooms from a CSV or JSON Lines file",
        description="Create the rooms of a CSV (header row of field names, nested ones dotted: "
        "metadata.room_title) or JSON Lines file through the API, in createBulk batches. "
        "Exit status (the same for --dry-run): 0 when every line is a room, 1 when a line is bad "
        "or refused or a room failed or is pending, 2 for a file, setup or unreachable-API error, "
        "130 when interrupted (Ctrl-C still writes --report).",
    )
    bulk.add_argument("file", help="CSV with a header row, or .jsonl with one request per line")
    bulk.add_argument("--url", default=None, help="API base URL (default http://HOST:PORT)")
    bulk.add_argument("--batch-size", type=int, default=500, help="rooms per createBulk call")
    bulk.add_argument("--dry-run", action="store_true", help="validate only, create nothing")
    bulk.add_argument("--report", default=None, help="write each room's outcome to this CSV")
    bulk.add_argument("--no-wait", action="store_true", help="don't wait for rooms to be created")
    bulk.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for the rooms (default 600)"
    )
    bulk.add_argument(
        "--strict", action="store_true", help="kept for older scripts: a bad line always fails"
    )
    bulk.set_defaults(func=run_create_rooms)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    result: Any = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
