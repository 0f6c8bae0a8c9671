"""`roomkeeper create-rooms FILE`: bulk creation from CSV or JSON Lines through the API.

This module reads the file: each line (CSV row or JSON line) becomes one create request, checked
locally with the service's own validation, so a bad line is reported with its line number before
anything is sent, and never stops the rest. `roomkeeper.bulkclient` submits the good ones (and
runs the command).

CSV: a header row names request fields, nested ones as dotted paths
(`metadata.room_features.room_duration`). Cells are typed by the field they fill: integers for
the numeric fields, booleans (true/false/1/0/yes/no) for the switches, text otherwise; an empty
cell is an absent field. `metadata.room_features` is always sent (an empty object takes every
default), since a cell cannot say "empty object"; a JSON line without `metadata.room_features`
gets the same empty object, so the two formats follow one rule. A row with fewer or more cells
than the header is refused (a missing cell would silently shift nothing, but usually means a
lost separator). JSON Lines: one create request object per line.
`start_at` (either format) is unix seconds or ISO 8601 with a UTC offset (`2027-02-01T09:00+01:00`);
it is sent as unix seconds.
"""

from __future__ import annotations

import csv
import datetime
import io
import ipaddress
import json
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from worker.rooms.limits import CreateLimits
from worker.rooms.request import CreateRoomRequest, RequestInvalid, parse_create_room
from worker.wire import names_of

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
TRUE = frozenset({"true", "1", "yes", "y", "on"})
FALSE = frozenset({"false", "0", "no", "n", "off"})
_INTEGER = re.compile(r"[+-]?\d+")
# The server judges webhook addresses against its own allow-list; locally every address passes,
# so only the rules that do not depend on the deployment are checked here.
LOCAL_LIMITS = CreateLimits(
    allowed_cidrs=(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
)


class FileError(Exception):
    """The file as a whole cannot be read (missing, not text, no usable header)."""


@dataclass
class Line:
    """One room of the file: its request, or why its line is bad."""

    line: int  # 1-based line where the record starts
    room_id: str
    request: dict[str, Any] | None
    error: str | None = None


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _kind_of(annotation: Any) -> str:
    """'int', 'bool' or 'str' for a field's annotation (Optional/Annotated unwrapped)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _kind_of(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        kinds = {_kind_of(a) for a in typing.get_args(annotation) if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else "str"
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    return "str"


def _field_kinds(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    """Every dotted field path of the create request (aliases included) and its cell type."""
    kinds: dict[str, str] = {}
    for name, field in model.model_fields.items():
        names = names_of(field, name)
        sub = _model_of(field.annotation)
        for alias in dict.fromkeys(names):
            path = f"{prefix}{alias}"
            if sub is not None:
                kinds.update(_field_kinds(sub, f"{path}."))
            else:
                kinds[path] = _kind_of(field.annotation)
    return kinds


FIELD_KINDS = _field_kinds(CreateRoomRequest) | {
    # Checked by validators rather than by type, so the models cannot say it.
    "metadata.room_features.breakout_room_features.allowed_number_rooms": "int",
    "metadata.room_features.polls_features.is_allow": "bool",
    "start_at": "time",
    "startAt": "time",
}


def unix_seconds(value: Any, column: str = "start_at") -> Any:
    """A start time as unix seconds: digits as they are, ISO 8601 with an offset converted.

    Anything else is left for the service's validation to refuse (with its own message).
    """
    if not isinstance(value, str) or _INTEGER.fullmatch(value.strip()):
        return int(value) if isinstance(value, str) else value
    try:
        moment = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        raise _CellError(
            f"{column}: {value!r} is neither unix seconds nor ISO 8601 (2027-02-01T09:00+01:00)"
        ) from None
    if moment.tzinfo is None:
        raise _CellError(f"{column}: {value!r} needs a UTC offset (+01:00, Z), or unix seconds")
    return int(moment.timestamp())


class _CellError(ValueError):
    pass


def convert_cell(column: str, raw: str) -> Any:
    """A cell's value for its column (None = absent); raises ValueError naming the column."""
    text = raw.strip()
    if not text:
        return None
    kind = FIELD_KINDS.get(column, "str")
    if kind == "time":
        return unix_seconds(text, column)
    if kind == "int":
        if not _INTEGER.fullmatch(text):
            raise _CellError(f"{column}: {raw!r} is not an integer")
        return int(text)
    if kind == "bool":
        if text.lower() in TRUE:
            return True
        if text.lower() in FALSE:
            return False
        raise _CellError(f"{column}: {raw!r} is not a boolean (true/false/1/0/yes/no)")
    return raw


def _check_header(header: list[str]) -> list[str]:
    names = [h.strip() for h in header]
    if not any(names):
        raise FileError("the first row must name the request fields (e.g. room_id,...)")
    for i, name in enumerate(names):
        if not name or any(not part for part in name.split(".")):
            raise FileError(f"header column {i + 1} is not a field name: {header[i]!r}")
        if names.index(name) != i:
            raise FileError(f"header names {name!r} twice")
    for name in names:
        for other in names:
            if other.startswith(name + "."):
                raise FileError(f"header names both {name!r} and {other!r}")
    return names


def _nest(columns: list[str], values: list[Any]) -> dict[str, Any]:
    request: dict[str, Any] = {"metadata": {"room_features": {}}}
    for column, value in zip(columns, values, strict=True):
        if value is None:
            continue
        *parents, leaf = column.split(".")
        node = request
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return request


def read_csv(text: str) -> list[Line]:
    """The rooms of a CSV text (header first)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise FileError("the file is empty") from None
    except csv.Error as exc:
        raise FileError(f"line 1: {exc}") from None
    columns = _check_header(header)
    lines: list[Line] = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            lines.append(Line(start, "", None, f"not valid CSV: {exc}"))
            continue
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        at = columns.index("room_id") if "room_id" in columns else len(row)
        room_id = row[at].strip() if at < len(row) else ""
        if len(row) != len(columns):
            msg = f"has {len(row)} cells, the header names {len(columns)}"
            lines.append(Line(start, room_id, None, msg))
            continue
        try:
            values = [convert_cell(c, v) for c, v in zip(columns, row, strict=True)]
        except _CellError as exc:
            lines.append(Line(start, room_id, None, str(exc)))
            continue
        lines.append(Line(start, room_id, _nest(columns, values)))
    return lines


def _with_features(request: dict[str, Any]) -> dict[str, Any]:
    """An absent `metadata.room_features` filled with `{}` (every default), as a CSV row gets."""
    metadata = request.get("metadata")
    if metadata is None:
        return {**request, "metadata": {"room_features": {}}}
    if isinstance(metadata, dict) and metadata.get("room_features") is None:
        return {**request, "metadata": {**metadata, "room_features": {}}}
    return request


def read_jsonl(text: str) -> list[Line]:
    """The rooms of a JSON Lines text (one create request object per line)."""
    lines: list[Line] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except ValueError as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            column = f" (column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
            lines.append(Line(number, "", None, f"invalid JSON: {msg}{column}"))
            continue
        if not isinstance(data, dict):
            lines.append(Line(number, "", None, "must be a JSON object (one request per line)"))
            continue
        room_id = data.get("room_id")
        room_id = room_id if isinstance(room_id, str) else ""
        try:
            for key in ("start_at", "startAt"):
                if key in data:
                    data[key] = unix_seconds(data[key], key)
        except _CellError as exc:
            lines.append(Line(number, room_id, None, str(exc)))
            continue
        lines.append(Line(number, room_id, _with_features(data)))
    return lines


def is_jsonl(path: Path, text: str) -> bool:
    """JSON Lines by suffix, or (no known suffix) when the first character opens an object."""
    if path.suffix.lower() in JSONL_SUFFIXES:
        return True
    if path.suffix.lower() == ".csv":
        return False
    return text.lstrip().startswith("{")


def read_rooms(path: Path) -> list[Line]:
    """Every room of the file, each checked locally; bad lines carry their error."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise FileError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise FileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise FileError(f"{path}: {exc.strerror}") from None
    lines = read_jsonl(text) if is_jsonl(path, text) else read_csv(text)
    first_line: dict[str, int] = {}
    for line in lines:
        if line.request is None:
            continue
        try:
            room = parse_create_room(line.request, LOCAL_LIMITS)
        except RequestInvalid as exc:
            line.error, line.request = exc.msg, None
            continue
        if room.room_id in first_line:
            line.error = (
                f"room_id {room.room_id} is already used on line {first_line[room.room_id]}"
            )
            line.request = None
            continue
        first_line[room.room_id] = line.line
    return lines


def unknown_columns(path: Path) -> list[str]:
    """CSV header names that are no field roomkeeper knows (sent as text, kept in metadata)."""
    if is_jsonl(path, ""):
        return []
    with path.open(newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    return [h.strip() for h in header if h.strip() and h.strip() not in FIELD_KINDS]
