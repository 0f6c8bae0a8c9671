"""Derived event ids (a forwarded LiveKit event's, a session's `session_ended`) are the name-based
UUIDs (version 5) of their parts in roomkeeper's namespace, as the `uuid` module makes them: the
same parts give the same id, across versions of roomkeeper too."""

from __future__ import annotations

import uuid

from worker.webhooks.bodies import derived_event_id

NAMESPACE = uuid.UUID("0b8f6a52-3f8e-4c1e-9a57-6f1d2c0e5a11")


def test_derived_ids_are_uuid5_of_the_joined_parts() -> None:
    # Redeliveries and the receivers' dedup rely on an event keeping its id across versions.
    cases = [
        ("livekit", "EV_abcdef123456"),
        ("session_ended", "RM_1"),
        ("livekit", ""),
        ("é ✓", "x|y", "z" * 300),
        (),
    ]
    cases += [("livekit", f"EV_{n:012x}") for n in range(0, 2**40, 2**31 + 12345)]
    for parts in cases:
        got = derived_event_id(*parts)
        assert got == str(uuid.uuid5(NAMESPACE, "|".join(parts))), parts
        assert uuid.UUID(got).version == 5
        assert uuid.UUID(got).variant == uuid.RFC_4122
