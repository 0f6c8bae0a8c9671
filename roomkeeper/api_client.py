"""create-rooms' calls to the API: its settings, signed POSTs, the reachability check, Ctrl-C.

`preflight` asks for `/openapi.json` before anything is sent, so a wrong `--url` fails within
seconds, and tells whether `createBulk` knows `dry_run`; `until_interrupted` turns SIGINT and
SIGTERM into a clean stop of the run (the caller then writes its report).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import Awaitable
from typing import Any

import aiohttp
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.webhooks.signing import body_hmac

PREFLIGHT_S = 10.0  # seconds the API has to answer the first request


class CliSettings(BaseSettings):
    """Only what the command needs (the worker's required settings need not be set here)."""

    model_config = SettingsConfigDict(env_prefix="ROOMKEEPER_", env_file=".env", extra="ignore")

    api_key: str = ""
    api_secret: SecretStr = SecretStr("")
    host: str = "127.0.0.1"
    port: int = 8080

    def base_url(self) -> str:
        """Where `roomkeeper api` listens by the same settings (a wildcard means this host)."""
        wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104
        host = wildcard.get(self.host, self.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"


class ApiFailure(Exception):
    """The API refused a whole call for a reason retrying will not fix (auth, bad request)."""


class Api:
    """Signed calls to roomkeeper's API (the plugNmeet HMAC over the raw body)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, key: str, secret: str) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.key = key
        self.secret = secret

    async def post(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """POST a JSON body; (HTTP status, the plugNmeet answer)."""
        headers = {
            "Content-Type": "application/json",
            "API-KEY": self.key,
            "HASH-SIGNATURE": body_hmac(body, self.secret),
        }
        async with self.session.post(self.url + path, data=body, headers=headers) as resp:
            text = await resp.text()
            try:
                answer = json.loads(text)
            except ValueError:
                answer = {"status": False, "msg": text[:200] or resp.reason or ""}
            return resp.status, answer if isinstance(answer, dict) else {"status": False}


_LIMIT = re.compile(r"(?:rooms|job_ids): must hold 1 to (\d+) items")


def bulk_limit(answer: dict[str, Any]) -> int | None:
    """The server's items-per-call bound, when it refused a call for exceeding it."""
    match = _LIMIT.match(str(answer.get("msg", "")))
    return int(match.group(1)) if match and int(match.group(1)) > 0 else None


def body_schema(spec: dict[str, Any], path: str) -> dict[str, Any]:
    """The request body schema of `path` in an OpenAPI document, its $refs followed."""
    try:
        schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        schema = schema["schema"]
        while isinstance(schema, dict) and "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    except (KeyError, TypeError, AttributeError):
        return {}
    return schema if isinstance(schema, dict) else {}


async def preflight(session: aiohttp.ClientSession, url: str) -> dict[str, Any] | str:
    """The API's OpenAPI document, or why the API at `url` cannot be used (within seconds).

    A refused connection fails at once: retrying it is what made a wrong `--url` wait for
    minutes. A host that drops packets is given as long as a busy API could take to answer.
    """
    timeout = aiohttp.ClientTimeout(total=PREFLIGHT_S)
    try:
        async with session.get(url.rstrip("/") + "/openapi.json", timeout=timeout) as resp:
            if resp.status != 200:
                return f"{url} does not answer like roomkeeper's API (HTTP {resp.status})"
            spec = await resp.json(content_type=None)
    except ValueError:
        spec = None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        return f"cannot reach the API at {url} ({reason})"
    if not isinstance(spec, dict):
        return f"{url} does not answer like roomkeeper's API (no OpenAPI document)"
    return spec


async def until_interrupted(work: Awaitable[None]) -> bool:
    """Run `work`; True when SIGINT or SIGTERM stopped it (cleanly: it is cancelled)."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        await task
    except asyncio.CancelledError:
        if not stopped:
            raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return stopped
