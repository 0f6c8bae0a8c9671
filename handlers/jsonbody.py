"""Strict JSON for request bodies: one meaning per document or a clear refusal.

Duplicate keys (which a receiver might read either way), NaN/Infinity (not JSON), invalid UTF-8,
absurd nesting and numbers too long to be an integer are refused with a message saying which.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from itertools import accumulate
from typing import Any

import orjson

MAX_DEPTH = 32


class BadJson(ValueError):
    """The body is not acceptable JSON; str() says why."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BadJson(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise BadJson(f"{name} is not valid JSON")


# A JSON string (its closing quote optional: an unterminated one runs to the end), and the
# brackets outside strings: the scan below is then done in C, not a Python loop per character.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.S)
_BRACKET = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_LONG_NUMBER = re.compile(r"[0-9]{19}")  # beyond 18 digits an integer may not fit in 64 bits


def _depth(raw: str) -> int:
    """Deepest bracket nesting outside strings (checked before parsing, so no recursion error)."""
    brackets = _BRACKET.findall(_STRING.sub("", raw))
    return max(0, max(accumulate(map(_STEP.__getitem__, brackets)), default=0))


def _shape(value: Any, level: int) -> tuple[int, int]:
    """Object members at every level of a decoded value, and its nesting (counted no further
    than just past MAX_DEPTH)."""
    if level > MAX_DEPTH:
        return 0, level
    items: Iterable[Any]
    if isinstance(value, dict):
        members, items = len(value), value.values()
    elif isinstance(value, list):
        members, items = 0, value
    else:
        return 0, level - 1
    deepest = level
    for item in items:
        if isinstance(item, dict | list):
            inner, depth = _shape(item, level + 1)
            members += inner
            deepest = max(deepest, depth)
    return members, deepest


def _fast(body: bytes, text: str) -> Any:
    """The document decoded by orjson (in C), or None when the stdlib reader must read it.

    orjson accepts exactly the JSON the stdlib reads here and decodes it to the same values,
    but keeps the last of duplicate keys: a document whose text may hold more members (each a
    `:` outside strings) than its decoded objects do is left to the stdlib reader, which
    refuses it, as it does whatever orjson refuses (NaN, lone surrogates) and whatever nests
    too deep, with its own message. orjson reads an integer beyond 64 bits as a float, so a
    document with a number that long is left to the stdlib reader too.
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    members, depth = _shape(value, 1)
    if depth > MAX_DEPTH:
        return None
    # Every `:` is a member but those inside strings: when no string holds one, the count is
    # exact at once; else the strings are cut out first.
    if text.count(":") != members:
        outside = _STRING.sub("", text)
        if outside.count(":") != members or _LONG_NUMBER.search(outside):
            return None
    elif _LONG_NUMBER.search(text):
        return None
    return value


def parse_json(body: bytes) -> Any:
    """Decode a request body, raising BadJson with a reason."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJson(f"body is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise BadJson("body is empty")
    value = _fast(body, text)
    if value is not None:
        return value
    if _depth(text) > MAX_DEPTH:
        raise BadJson(f"nesting deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except BadJson:
        raise
    except json.JSONDecodeError as exc:
        raise BadJson(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise BadJson(f"malformed JSON: {exc}") from None
