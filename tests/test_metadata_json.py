"""The metadata LiveKit stores is spelled exactly as Python's `json` spells it, whatever it holds.

`metadata_json_of` lets pydantic write it and falls back to `json` where their spellings differ
(floats); the bytes must be the same either way, since LiveKit, the answers and the webhooks
carry them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from worker.rooms.limits import DEFAULT_LIMITS
from worker.rooms.metadata_json import metadata_json_of
from worker.rooms.request import CreateRoomRequest

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**140), 2**140)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
FEATURES = st.dictionaries(
    st.sampled_from(["chat_features", "allow_polls", "room_duration", "is_allow", "unknown"]),
    st.booleans() | st.integers(0, 100) | VALUE,
    max_size=3,
)


def python_json(metadata: Any) -> str:
    return json.dumps(
        metadata.model_dump(exclude_none=True), separators=(",", ":"), ensure_ascii=False
    )


@pytest.mark.slow  # 1,500 examples: some 10 s, so in `make test`, not `make test-fast`
@settings(max_examples=1500, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(TEXT, VALUE, max_size=4), TEXT, FEATURES)
def test_stored_metadata_is_what_python_json_writes(
    extra: dict[str, Any], title: str, features: dict[str, Any]
) -> None:
    metadata = {**extra, "room_title": title or "t", "room_features": features}
    try:
        request = CreateRoomRequest.model_validate(
            {"room_id": "r", "metadata": metadata}, context={"limits": DEFAULT_LIMITS}
        )
    except ValidationError:
        return  # refused requests store nothing
    assert metadata_json_of(request.metadata) == python_json(request.metadata)
    assert request.room.metadata_json == python_json(request.metadata)


def test_floats_keep_pythons_spelling() -> None:
    metadata = {"room_title": "t", "room_features": {}, "small": 1e-7, "big": 1e16, "half": 0.5}
    request = CreateRoomRequest.model_validate(
        {"room_id": "r", "metadata": metadata}, context={"limits": DEFAULT_LIMITS}
    )
    assert request.room.metadata_json.endswith('"small":1e-07,"big":1e+16,"half":0.5}')
