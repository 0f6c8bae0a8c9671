"""Rooms kept across restarts in a JSON file (`python -m emulator --state-file`) for dev.

A real LiveKit forgets its rooms when restarted, and roomkeeper's reconciliation then ends every
one of them, correctly. In development the emulator restarts with every `roomkeeper dev --keep`,
so it saves its rooms when it stops and loads them when it starts: the rooms roomkeeper remembers
are still there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict, ParseDict
from livekit.protocol import models

from .state import RoomEntry, State


def save(state: State, path: Path) -> int:
    """Write every room (with its participants) to `path`, atomically; how many were written."""
    rooms: list[dict[str, Any]] = [
        {
            "room": MessageToDict(entry.proto),
            "participants": [MessageToDict(p) for p in entry.participants.values()],
            "first_joined_at": entry.first_joined_at,
            "last_left_at": entry.last_left_at,
            "active": entry.active,
        }
        for entry in state.rooms.values()
    ]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"rooms": rooms}))
    os.replace(tmp, path)
    return len(rooms)


def load(state: State, path: Path) -> int:
    """Restore the rooms a previous run saved to `path` (none when it does not exist)."""
    if not path.is_file():
        return 0
    data = json.loads(path.read_text())
    for saved in data.get("rooms", []):
        entry = RoomEntry(ParseDict(saved["room"], models.Room()))
        for p in saved.get("participants", []):
            participant = ParseDict(p, models.ParticipantInfo())
            entry.participants[participant.identity] = participant
        entry.first_joined_at = int(saved.get("first_joined_at", 0))
        entry.last_left_at = int(saved.get("last_left_at", 0))
        entry.active = int(saved.get("active", 0))
        state.restore(entry)
    return len(data.get("rooms", []))
