"""The strict JSON reader's nesting check: brackets inside strings never count."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.jsonbody import MAX_DEPTH, BadJson, _depth, parse_json


def reference_depth(raw: str) -> int:
    """The check's meaning, one character at a time."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in raw:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


@pytest.mark.slow  # 2,000 examples: some 3 s, so in `make test`, not `make test-fast`
@settings(max_examples=2000)
@given(st.text(alphabet='[]{}"\\a\n,:', max_size=80))
def test_the_depth_of_any_text_is_the_one_a_character_scan_finds(raw: str) -> None:
    assert _depth(raw) == reference_depth(raw)


def test_brackets_in_strings_and_after_an_unterminated_string_do_not_count() -> None:
    deep = "[" * (MAX_DEPTH + 1)
    assert _depth('{"a": "' + deep + '"}') == 1
    assert _depth('{"a": "x\\"' + deep + '"}') == 1  # an escaped quote does not end the string
    assert _depth('{"a": "' + deep) == 1  # unterminated: the rest is inside the string
    with pytest.raises(BadJson, match="nesting deeper than"):
        parse_json((deep + "]" * (MAX_DEPTH + 1)).encode())
