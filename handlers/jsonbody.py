"""Strict JSON for request bodies: one meaning per document or a clear refusal.

Duplicate keys (which a receiver might read either way), NaN/Infinity (not JSON), invalid UTF-8,
absurd nesting and numbers too long to be an integer are refused with a message saying which.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

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


def _depth(raw: str) -> int:
    """Deepest bracket nesting outside strings (checked before parsing, so no recursion error)."""
    brackets = _BRACKET.findall(_STRING.sub("", raw))
    return max(0, max(accumulate(map(_STEP.__getitem__, brackets)), default=0))


def parse_json(body: bytes) -> Any:
    """Decode a request body, raising BadJson with a reason."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJson(f"body is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise BadJson("body is empty")
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
