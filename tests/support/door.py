"""A TCP door in front of a server, for outages that are not a clean error answer.

`open` forwards every connection to the server behind; `silent` accepts connections and never
reads or answers them (a hung process, a black-holed route); `shut` listens on nothing, so
connecting is refused. The door keeps its port across modes, so a client configured with its
URL meets each outage, and then the server again, without being told.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from tests.support.servers import free_port

Mode = Literal["open", "silent", "shut"]


class Door:
    """A door on 127.0.0.1 in front of `127.0.0.1:target_port`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.mode: Mode = "shut"
        self.accepted = 0  # connections taken while silent
        self._server: asyncio.Server | None = None
        self._held: set[asyncio.StreamWriter] = set()
        self._forwarded: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The URL clients are given."""
        return f"http://127.0.0.1:{self.port}"

    async def set(self, mode: Mode) -> None:
        """Switch to `mode`.

        Connections a silent door held are dropped when it changes; forwarded connections go
        silent with it (what they carry is dropped, nothing comes back), and a shut door resets
        them, as a dead process's kernel would.
        """
        for writer in list(self._held):
            writer.transport.abort()
        self._held.clear()
        if mode == "shut":
            for writer in list(self._forwarded):
                writer.transport.abort()
            self._forwarded.clear()
        self.mode = mode
        if mode == "shut":
            if self._server is not None:
                self._server.close()
                self._server = None
        elif self._server is None:
            self._server = await asyncio.start_server(self._on_connection, "127.0.0.1", self.port)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.mode == "silent":
            self.accepted += 1
            self._held.add(writer)
            return  # never read, never answer; `set` drops it
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._forwarded.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while chunk := await src.read(65536):
                if self.mode != "open":
                    continue  # silent: swallow it, answer nothing
                dst.write(chunk)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._forwarded.discard(dst)
            with contextlib.suppress(Exception):
                dst.close()

    async def close(self) -> None:
        """Shut the door and stop every forwarded connection."""
        await self.set("shut")
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)


@contextlib.asynccontextmanager
async def door(target_port: int, mode: Mode = "open") -> AsyncIterator[Door]:
    """A `Door` in `mode` until the block exits."""
    d = Door(target_port)
    await d.set(mode)
    try:
        yield d
    finally:
        await d.close()
