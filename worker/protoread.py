"""Protobuf's JSON read into a message, the same message as `json_format.Parse` reads.

`parse_json(text, cls)` equals `Parse(text, cls(), ignore_unknown_fields=True)`: the message when
it reads one, ParseError when it does not. `json_format` works out every field's conversion for
every value in Python, a fifth of what the API spends on a LiveKit event; here the JSON is
decoded by the standard library's C decoder (each object as its key/value pairs, so a repeated
key is seen, as Parse sees it) and each message type's fields are looked up in a table made
once. Only what it is sure of is read here: plain strings, integers, booleans, enums by name or
number, finite doubles, nested and repeated messages, string-keyed maps. Anything else (a null,
a number as text where it would have to guess, bytes, well-known types, a field given twice or
two of one oneof, an unknown enum name, a value out of range) sends the whole text to `Parse`,
whose answer (or error) is the answer.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from google.protobuf import descriptor as pb_descriptor
from google.protobuf.json_format import Parse
from google.protobuf.message import Message

FD = pb_descriptor.FieldDescriptor
M = TypeVar("M", bound=Message)
# Nesting this deep is left to Parse (which refuses past its own limit of 100).
MAX_DEPTH = 32
_DIGITS = re.compile(r"-?[0-9]{1,20}")
# A surrogate left alone by the JSON decoder (an escaped half of a pair): Parse refuses some.
_SURROGATE = re.compile("[\ud800-\udfff]")
_INTS = frozenset({FD.CPPTYPE_INT32, FD.CPPTYPE_UINT32})
_INT64S = frozenset({FD.CPPTYPE_INT64, FD.CPPTYPE_UINT64})


class _Unsure(Exception):
    """Something this reader leaves to `Parse`."""


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs, in order (a list, so an array is told apart)."""


def _pairs(pairs: list[tuple[str, Any]]) -> _Pairs:
    """The decoder's hook for every object, an ignored one's too: a repeated key is Parse's
    to refuse."""
    if len(pairs) > 1 and len({key for key, _ in pairs}) != len(pairs):
        raise _Unsure
    return _Pairs(pairs)


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs)


def parse_json(text: str | bytes, cls: type[M]) -> M:
    """`Parse(text, cls(), ignore_unknown_fields=True)`, read faster where it can be."""
    msg = cls()
    try:
        data = _DECODER.decode(text if isinstance(text, str) else text.decode("utf-8"))
        if not isinstance(data, _Pairs):
            raise _Unsure
        _read(data, msg, 0)
        return msg
    except (_Unsure, ValueError, TypeError, OverflowError, RecursionError):
        return Parse(text, cls(), ignore_unknown_fields=True)


def _read(pairs: _Pairs, msg: Message, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _Unsure
    table = _table(msg.DESCRIPTOR)
    seen: set[Any] = set()
    for name, value in pairs:
        entry = table.get(name)
        if entry is None:
            if name.startswith("["):
                raise _Unsure  # an extension's name
            continue  # unknown: ignored, as Parse is told to
        field, kind, oneof = entry
        if field.number in seen or (oneof is not None and oneof in seen):
            raise _Unsure  # a field (or a oneof) given twice: Parse decides what that means
        seen.add(field.number)
        if oneof is not None:
            seen.add(oneof)
        if value is None:
            raise _Unsure
        if kind == "map":
            _read_map(value, getattr(msg, field.name), field, depth)
        elif kind == "repeated":
            if not isinstance(value, list) or isinstance(value, _Pairs):
                raise _Unsure
            target = getattr(msg, field.name)
            if field.cpp_type == FD.CPPTYPE_MESSAGE:
                for item in value:
                    if not isinstance(item, _Pairs):
                        raise _Unsure
                    _read(item, target.add(), depth + 1)
            else:
                target.extend([_scalar(field, item) for item in value])
        elif kind == "message":
            if not isinstance(value, _Pairs):
                raise _Unsure
            sub = getattr(msg, field.name)
            sub.SetInParent()
            _read(value, sub, depth + 1)
        else:
            setattr(msg, field.name, _scalar(field, value))


def _read_map(value: Any, target: Any, field: Any, depth: int) -> None:
    if not isinstance(value, _Pairs):
        raise _Unsure
    entry = field.message_type
    if entry.fields_by_name["key"].cpp_type != FD.CPPTYPE_STRING:
        raise _Unsure
    value_field = entry.fields_by_name["value"]
    for key, item in value:
        if item is None or _SURROGATE.search(key):
            raise _Unsure
        if value_field.cpp_type == FD.CPPTYPE_MESSAGE:
            if not isinstance(item, _Pairs):
                raise _Unsure
            _read(item, target[key], depth + 1)
        else:
            target[key] = _scalar(value_field, item)


def _scalar(field: Any, value: Any) -> Any:
    """One JSON value of a scalar field, as Parse converts it; _Unsure when not plain."""
    cpp = field.cpp_type
    kind = type(value)
    if cpp == FD.CPPTYPE_STRING:
        if kind is str and field.type != FD.TYPE_BYTES and not _SURROGATE.search(value):
            return value
    elif cpp == FD.CPPTYPE_BOOL:
        if kind is bool:
            return value
    elif cpp in _INTS or cpp in _INT64S:
        if kind is int:
            return value
        if kind is str and cpp in _INT64S and _DIGITS.fullmatch(value):
            return int(value)
    elif cpp == FD.CPPTYPE_ENUM:
        enum = field.enum_type
        if kind is str:
            known = enum.values_by_name.get(value)
            if known is not None:
                return known.number
        elif kind is int:
            known = enum.values_by_number.get(value)
            if known is not None or not enum.is_closed:
                return value
    elif cpp == FD.CPPTYPE_DOUBLE and kind is float and value - value == 0.0:  # finite
        return value
    raise _Unsure


_TABLES: dict[str, dict[str, tuple[Any, str, Any]]] = {}


def _table(desc: Any) -> dict[str, tuple[Any, str, Any]]:
    """A message type's fields by JSON name and proto name: (field, kind, its oneof or None)."""
    table = _TABLES.get(desc.full_name)
    if table is None:
        if desc.full_name.startswith("google.protobuf.") or desc.extension_ranges:
            raise _Unsure  # well-known types read JSON of their own; extensions by name
        table = {}
        for field in desc.fields:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                kind = "map"
            elif field.is_repeated:
                kind = "repeated"
            elif field.cpp_type == FD.CPPTYPE_MESSAGE:
                kind = "message"
            else:
                kind = "scalar"
            oneof = field.containing_oneof
            entry = (field, kind, None if oneof is None else oneof.full_name)
            table.setdefault(field.json_name, entry)
        for field in desc.fields:
            table.setdefault(field.name, table[field.json_name])
        _TABLES[desc.full_name] = table
    return table
