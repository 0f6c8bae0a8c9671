"""How an event body and an attempt log are kept in Redis: compressed, compact, still text.

A body is kept for the whole retention period (a delivered event can be redelivered), so it is
stored deflated against a preset dictionary of roomkeeper's own bodies (`bodies_v1.zdict`: the
field names and the normalised room metadata every event repeats), then base64, because the
worker reads Redis with decoded (UTF-8) replies. A body stored before packing (raw JSON, it
starts with `{`) is read as it is.

The attempt log is one field of the delivery record, one compact JSON array per attempt and a
newline between them (JSON escapes newlines inside strings), so the record of a delivery that
succeeded at once stays one small hash in Redis's compact encoding.
"""

from __future__ import annotations

import binascii
import zlib
from functools import cache
from importlib.resources import files
from typing import Any

import orjson

# The dictionary a packed body was deflated with is named by its prefix; a body packed with
# `z1:` must decode for as long as it may be kept, so `bodies_v1.zdict` never changes (a test
# pins its digest): a better dictionary is a new file and a new prefix.
PACKED_V1 = "z1:"
_WBITS = -15  # raw deflate: no zlib header or checksum (the body is signed; Redis keeps it)
# Deflate's hash tables at memLevel 4 instead of 8: setting up the default ones took most of the
# time of packing a body of a few KB, and bodies this size come out the same size either way.
_MEM_LEVEL = 4


@cache
def _zdict_v1() -> bytes:
    return files("worker.webhooks").joinpath("bodies_v1.zdict").read_bytes()


@cache
def _primed(level: int) -> Any:
    """A compressor that has taken in the dictionary and nothing else, to be copied: loading
    the dictionary into a fresh one costs about as much as deflating a body of a few KB."""
    return zlib.compressobj(level, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zdict=_zdict_v1())


def pack_body(body: bytes, *, level: int = 9) -> str:
    """The text a body is stored as (`level`: deflate's effort; a body kept for a short while
    is packed faster and a little larger, and reads back the same)."""
    # A copy of the primed compressor is in the state a fresh one is in after taking the
    # dictionary, so it packs the same bytes.
    deflate = _primed(level).copy()
    packed = deflate.compress(body) + deflate.flush()
    return PACKED_V1 + binascii.b2a_base64(packed, newline=False).decode("ascii")


# Redis keeps a hash in its compact encoding only while every value is at most 64 bytes
# (`hash-max-listpack-value`), so packed text kept in a hash goes in pieces of that size.
PIECE = 64


def piece_fields(prefix: str, packed: str) -> dict[str, str]:
    """Packed text as hash fields `{prefix}0`, `{prefix}1`, … of at most `PIECE` characters."""
    starts = range(0, len(packed), PIECE)
    return {f"{prefix}{n}": packed[at : at + PIECE] for n, at in enumerate(starts)}


def unpack_body(stored: str) -> bytes:
    """The exact bytes of a stored body (packed, or raw from before packing)."""
    if not stored.startswith(PACKED_V1):
        return stored.encode()
    inflate = zlib.decompressobj(_WBITS, zdict=_zdict_v1())
    raw = binascii.a2b_base64(stored[len(PACKED_V1) :])
    return inflate.decompress(raw) + inflate.flush()


def attempt_entry(record: dict[str, Any]) -> str:
    """One attempt (as `AttemptResult.as_record` makes it) as its attempt log line:
    `[at, duration_ms, status or null, response]`, then the error when there is one."""
    line: list[Any] = [
        record["at"],
        record["duration_ms"],
        record.get("status"),
        record["response"],
    ]
    if record.get("error") is not None:
        line.append(record["error"])
    return orjson.dumps(line).decode()


def attempt_log(stored: str | None) -> list[dict[str, Any]]:
    """The attempts of a record's `log` field, oldest first, as the deliveries API shows them."""
    out = []
    for line in (stored or "").split("\n"):
        if not line:
            continue
        at, duration_ms, status, response, *error = orjson.loads(line)
        attempt: dict[str, Any] = {"at": at, "duration_ms": duration_ms, "response": response}
        if status is not None:
            attempt["status"] = status
        if error:
            attempt["error"] = error[0]
        out.append(attempt)
    return out
