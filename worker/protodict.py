"""Protobuf messages as JSON-ready data, the same dicts as `json_format.MessageToDict` gives.

`message_dict(msg)` equals `MessageToDict(msg, preserving_proto_field_name=True,
always_print_fields_with_no_presence=True)`, key order included, so the bytes of a body built from
it do not change. `json_format` works out every field's conversion again for every value, in
Python, which makes it most of what forwarding a LiveKit event costs; here each message type's
conversions are worked out once (from its descriptor) and reused. Whatever the plan does not
cover (well-known types, extensions, an enum number its type does not name, json_format
internals it cannot read) goes to `MessageToDict` itself, so the answer is always json_format's.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor as pb_descriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

FD = pb_descriptor.FieldDescriptor
Convert = Callable[[Any], Any]
# A message type's plan: each field's conversion by number, and the unset fields without
# presence with what json_format prints for them, in declaration order.
Plan = tuple[dict[int, Convert], list[tuple[str, Any]]]


class _Unplanned(Exception):
    """A value the plan does not cover: the whole message goes to `MessageToDict`."""


def message_dict(msg: Message) -> dict[str, Any]:
    """`msg` as `MessageToDict(msg, preserving_proto_field_name=True,
    always_print_fields_with_no_presence=True)` gives it."""
    plan = _plan(msg.DESCRIPTOR)
    if plan is not None:
        try:
            return _convert(msg, plan)
        except _Unplanned:
            pass
    answer: dict[str, Any] = _json_format(msg)
    return answer


def _json_format(msg: Message) -> Any:
    """json_format's answer (a well-known type's is not always a dict: a Timestamp is text)."""
    return MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _convert(msg: Message, plan: Plan) -> dict[str, Any]:
    converters, unset = plan
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        convert = converters.get(field.number)
        if convert is None or field.is_extension:
            raise _Unplanned
        out[field.name] = convert(value)
    for name, default in unset:
        if name not in out:
            out[name] = default() if callable(default) else default
    return out


_PLANS: dict[str, Plan | None] = {}


def _plan(desc: Any) -> Plan | None:
    """The plan of a message type (None: json_format handles it), made once per type."""
    name = desc.full_name
    if name in _PLANS:
        return _PLANS[name]
    plan: Plan | None
    try:
        plan = None if name.startswith("google.protobuf.") else _make_plan(desc)
    except _Unplanned:
        plan = None
    _PLANS[name] = plan
    return plan


def _make_plan(desc: Any) -> Plan:
    converters: dict[int, Convert] = {}
    unset: list[tuple[str, Any]] = []
    for field in desc.fields:
        if _is_map(field):
            key_field = field.message_type.fields_by_name["key"]
            value = _value_converter(field.message_type.fields_by_name["value"])
            bool_keys = key_field.cpp_type == FD.CPPTYPE_BOOL
            converters[field.number] = _map_converter(value, bool_keys)
            default: Any = dict
        elif field.is_repeated:
            item = _value_converter(field)
            converters[field.number] = _list_converter(item)
            default = list
        else:
            converters[field.number] = _value_converter(field)
            default = None if field.has_presence else converters[field.number](field.default_value)
        if not field.has_presence:
            unset.append((field.name, default))
    return converters, unset


def _is_map(field: Any) -> bool:
    return bool(
        field.type == FD.TYPE_MESSAGE
        and field.message_type.has_options
        and field.message_type.GetOptions().map_entry
    )


def _list_converter(item: Convert) -> Convert:
    return lambda values: [item(v) for v in values]


def _map_converter(value: Convert, bool_keys: bool) -> Convert:
    def convert(entries: Any) -> dict[str, Any]:
        if bool_keys:
            return {("true" if k else "false"): value(entries[k]) for k in entries}
        return {str(k): value(entries[k]) for k in entries}

    return convert


def _value_converter(field: Any) -> Convert:
    """How one value of `field` is printed (json_format's `_FieldToJsonObject`)."""
    cpp = field.cpp_type
    if cpp == FD.CPPTYPE_MESSAGE:
        sub = field.message_type

        def message(value: Message) -> Any:
            plan = _plan(sub)
            if plan is not None:
                return _convert(value, plan)
            try:
                return _json_format(value)
            except Exception:  # json_format refuses it: let it say so as it would, nested
                raise _Unplanned from None

        return message
    if cpp == FD.CPPTYPE_ENUM:
        return _enum_converter(field)
    if cpp == FD.CPPTYPE_STRING:
        if field.type == FD.TYPE_BYTES:
            return lambda value: base64.b64encode(value).decode("utf-8")
        return str
    if cpp == FD.CPPTYPE_BOOL:
        return bool
    if cpp in (FD.CPPTYPE_INT64, FD.CPPTYPE_UINT64):
        return str
    if cpp in (FD.CPPTYPE_FLOAT, FD.CPPTYPE_DOUBLE):
        return _float_converter(cpp == FD.CPPTYPE_FLOAT)
    return _same


def _same(value: Any) -> Any:
    return value


def _enum_converter(field: Any) -> Convert:
    enum = field.enum_type
    if enum.full_name == "google.protobuf.NullValue":
        return lambda value: None
    names: dict[int, str] = {}
    for number, value in enum.values_by_number.items():
        if value.has_options and _has_json_option(value):
            raise _Unplanned  # a JSON name of its own: json_format knows how to read it
        names[number] = value.name
    closed = enum.is_closed

    def convert(number: int) -> Any:
        name = names.get(number)
        if name is not None:
            return name
        if closed:
            raise _Unplanned  # json_format refuses it: let it say so
        return number

    return convert


def _has_json_option(value: Any) -> bool:
    """Whether an enum value carries any option (a JSON name of its own among them, perhaps):
    such a value is left to json_format."""
    return bool(value.GetOptions().ListFields())


def _float_converter(single: bool) -> Convert:
    shortest: Convert | None = None
    if single:
        try:
            from google.protobuf.internal.type_checkers import ToShortestFloat
        except ImportError as exc:  # json_format's own rounding is not reachable: leave floats
            raise _Unplanned from exc
        shortest = ToShortestFloat

    def convert(value: float) -> Any:
        if math.isinf(value):
            return "-Infinity" if value < 0.0 else "Infinity"
        if math.isnan(value):
            return "NaN"
        return shortest(value) if shortest is not None else value

    return convert
