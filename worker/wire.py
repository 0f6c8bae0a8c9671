"""Reading a decoded JSON request into a pydantic model the way protojson does, for every route.

plugNmeet's clients write requests as protobuf's canonical JSON, so a body may spell each field by
its proto name (`room_id`) or its lowerCamelCase JSON name (`roomId`), at every level, and send
64-bit integers as strings (`"30"`). `read(model, data)` respells such a body into the model's own
field names, converts the numeric strings, drops `null` (= absent), collects the unknown keys as
warnings, validates with pydantic and reports every field error as `<dotted.path>: <rule>`.

Presence: proto3 leaves zero values off the wire, so in a message written with camelCase names
an absent scalar means its zero value (false, 0, ""), and only an absent sub-message gets the
model's defaults. A message written with snake_case names keeps presence-aware defaults (an
absent key gets the field's default). A message whose keys read the same either way (`{}` or
`{"name": ...}`) takes the spelling of the message around it. Zero values are filled only in
models that opt in (`Proto3`: those mirroring plugNmeet's proto messages), and only for fields
whose default is a value (a `None` default means "stored only when sent").

Field markers (in `Annotated[...]`): `Presence()` a proto3 `optional` field (absent keeps the
default in either spelling); `ZeroUnless("sibling")` zero only when `sibling` is absent too;
`Zero(value)` the zero of a field defaulting to `None`; `Also("name")` another accepted name;
`IntLike()` an untyped field read as an integer; `ReadAs(model)` a list whose items are
respelled as `model` but validated one by one later.
"""

from __future__ import annotations

import re
import types
from dataclasses import dataclass, field
from typing import (
    Annotated,
    Any,
    ClassVar,
    Generic,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
)

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
Spelling = Literal["snake", "camel"]

NOT_AN_OBJECT = "request body must be a JSON object"
_INTEGER = re.compile(r"-?[0-9]{1,20}")


@dataclass(frozen=True)
class Also:
    """Another name this field is read under (camelCase spellings are derived)."""

    name: str


@dataclass(frozen=True)
class Presence:
    """A proto3 `optional` field: absent keeps the default even in a camelCase message."""


@dataclass(frozen=True)
class Zero:
    """What an absent key means in a camelCase message, for a field whose default is `None`."""

    value: Any


@dataclass(frozen=True)
class ZeroUnless:
    """Absent in a camelCase message means zero only when `sibling` is absent as well."""

    sibling: str


@dataclass(frozen=True)
class ReadAs:
    """A list of untyped items each read (respelled) as `model`, validated later one by one."""

    model: type[BaseModel]


@dataclass(frozen=True)
class IntLike:
    """An untyped field that is still an integer on the wire (numeric strings converted)."""


class WireInvalid(ValueError):
    """A request that breaks rules: `errors` holds one `<path>: <rule>` per broken rule."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        self.msg = "; ".join(errors)
        super().__init__(self.msg)


def rule(message: str, *at: str) -> PydanticCustomError:
    """A broken rule as a pydantic error; `at` extends the error's loc below the validated value."""
    return PydanticCustomError("roomkeeper", "{rule}", {"rule": message, "at": at})


def camel(name: str) -> str:
    """protoc's JSON name for a field: `room_id` -> `roomId`."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass
class _Field:
    name: str  # the key pydantic reads (the field's alias, else its name)
    kind: Literal["int", "scalar", "message", "messages", "value"]
    model: type[BaseModel] | None
    zero: Any  # what an absent key means in a camelCase proto3 message; None = nothing
    zero_unless: str | None


@dataclass
class _Message:
    keys: dict[str, tuple[_Field, int]]  # every accepted key -> (field, priority; lower wins)
    camel_keys: frozenset[str]  # keys that can only be camelCase
    snake_keys: frozenset[str]  # keys that can only be snake_case
    zeros: list[_Field]
    keeps_unknown: bool
    fields: list[_Field] = field(default_factory=list)


_MESSAGES: dict[type[BaseModel], _Message] = {}


def unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """The type under Optional/Annotated, and any Annotated metadata met on the way."""
    extras: list[Any] = []
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *meta = get_args(annotation)
            extras.extend(meta)
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation, extras
            annotation = args[0]
        else:
            return annotation, extras


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _message(model: type[BaseModel]) -> _Message:
    """The wire table of one model, built once."""
    found = _MESSAGES.get(model)
    if found is not None:
        return found
    proto3 = bool(getattr(model, "PROTO3", False))
    keys: dict[str, tuple[_Field, int]] = {}
    camel_keys: set[str] = set()
    snake_keys: set[str] = set()
    zeros: list[_Field] = []
    fields: list[_Field] = []
    for name, info in model.model_fields.items():
        tp, extras = unwrap(info.annotation)
        extras += info.metadata
        kind: Literal["int", "scalar", "message", "messages", "value"] = "value"
        sub: type[BaseModel] | None = None
        read_as = next((x.model for x in extras if isinstance(x, ReadAs)), None)
        if read_as is not None:
            kind, sub = "messages", read_as
        elif _is_model(tp):
            kind, sub = "message", tp
        elif get_origin(tp) is list and get_args(tp) and _is_model(unwrap(get_args(tp)[0])[0]):
            kind, sub = "messages", unwrap(get_args(tp)[0])[0]
        elif tp is int or any(isinstance(x, IntLike) for x in extras):
            kind = "int"
        elif tp in (bool, str):
            kind = "scalar"
        default = None if info.is_required() else info.get_default(call_default_factory=False)
        presence = any(isinstance(x, Presence) for x in extras)
        unless = next((x.sibling for x in extras if isinstance(x, ZeroUnless)), None)
        zero = next((x.value for x in extras if isinstance(x, Zero)), None)
        if proto3 and not presence and kind in ("int", "scalar") and default is not None:
            zero = type(default)()  # False, 0 or ""
        if not proto3:
            zero = None
        entry = _Field(info.alias or name, kind, sub, zero, unless)
        fields.append(entry)
        if zero is not None:
            zeros.append(entry)
        names = [entry.name] + [x.name for x in extras if isinstance(x, Also)]
        for priority, spelled in enumerate(names):
            keys.setdefault(spelled, (entry, 2 * priority))
            keys.setdefault(camel(spelled), (entry, 2 * priority + 1))
            if camel(spelled) != spelled:
                camel_keys.add(camel(spelled))
                snake_keys.add(spelled)
    message = _Message(
        keys,
        frozenset(camel_keys),
        frozenset(snake_keys),
        zeros,
        model.model_config.get("extra") == "allow",
        fields,
    )
    _MESSAGES[model] = message
    return message


def names_of(info: FieldInfo, name: str) -> list[str]:
    """Every snake_case name a field is read under: its own (or alias) first, then `Also` ones."""
    return [info.alias or name] + [x.name for x in info.metadata if isinstance(x, Also)]


def _int(value: Any) -> Any:
    """protojson's integer forms: a JSON number, or a string holding one."""
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    return value


class _Reader:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def message(self, model: type[BaseModel], data: Any, outer: Spelling, at: str) -> Any:
        if not isinstance(data, dict):
            return data
        table = _MESSAGES.get(model) or _message(model)
        keys = table.keys
        spelling = outer
        camel_keys, snake_keys = table.camel_keys, table.snake_keys
        for key in data:
            if key in camel_keys:
                spelling = "camel"
                break
            if key in snake_keys:
                spelling = "snake"
        out: dict[str, Any] = {}
        chosen: dict[str, int] = {}
        for key, value in data.items():
            if value is None:
                continue  # null = absent
            known = keys.get(key)
            if known is None:
                if key not in out:
                    out[key] = value
                how = "kept as is" if table.keeps_unknown else "ignored"
                self.warnings.append(f"{at}{key}: not a known field, {how}")
                continue
            entry, priority = known
            name = entry.name
            if name in out and chosen.get(name, priority) <= priority:
                continue  # the field's own (or earlier) name wins over another spelling
            chosen[name] = priority
            kind = entry.kind
            if kind == "int":
                if isinstance(value, str):
                    value = _int(value)
            elif kind == "message":
                value = self.message(entry.model, value, spelling, f"{at}{name}.")  # type: ignore[arg-type]
            elif kind == "messages" and isinstance(value, list):
                sub = entry.model
                value = [
                    self.message(sub, v, spelling, f"{at}{name}.{n}.")  # type: ignore[arg-type]
                    for n, v in enumerate(value)
                ]
            out[name] = value
        if spelling == "camel":
            for entry in table.zeros:
                if entry.name not in out and (
                    entry.zero_unless is None or entry.zero_unless not in out
                ):
                    out[entry.name] = entry.zero
        return out


RULES = {
    "missing": "is required",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "bool_type": "must be a boolean",
    "string_type": "must be a string",
    "int_type": "must be an integer >= 0",  # every pydantic-checked integer here is a count
    "int_parsing": "must be an integer >= 0",
    "greater_than_equal": "must be an integer >= {ge}",
    "less_than_equal": "must be at most {le}",
}


def message_of(error: ErrorDetails, units: dict[str, str] | None = None) -> str:
    """Our `<dotted.path>: <rule>` for one pydantic error."""
    ctx = error.get("ctx") or {}
    loc: tuple[int | str, ...] = error["loc"]
    if error["type"] == "roomkeeper":
        text, loc = str(ctx["rule"]), (*loc, *ctx["at"])
    else:
        text = RULES.get(error["type"], "is invalid").format(**ctx)
        if error["type"] == "less_than_equal" and loc and units:
            text += units.get(str(loc[-1]), "")
    path = "".join(
        str(part) if not i or str(part).startswith("[") else f".{part}"
        for i, part in enumerate(loc)
    )
    return f"{path}: {text}" if path else text


@dataclass(frozen=True)
class Read(Generic[T]):
    """A validated request and what the reader noticed on the way."""

    value: T
    warnings: tuple[str, ...]


def respell(model: type[BaseModel], data: Any) -> tuple[Any, list[str]]:
    """`data` under the model's field names, with protojson's forms converted; and warnings."""
    reader = _Reader()
    return reader.message(model, data, "snake", ""), reader.warnings


def read(
    model: type[M],
    data: Any,
    context: dict[str, Any] | None = None,
    units: dict[str, str] | None = None,
) -> Read[M]:
    """Validate `data` as `model`; raises WireInvalid with every broken rule, in field order."""
    if not isinstance(data, dict):
        raise WireInvalid([NOT_AN_OBJECT])
    body, warnings = respell(model, data)
    return Read(validate(model, body, context, units), tuple(warnings))


def validate(
    model: type[M],
    body: Any,
    context: dict[str, Any] | None = None,
    units: dict[str, str] | None = None,
) -> M:
    """Validate an already respelled body; raises WireInvalid with every broken rule."""
    if not isinstance(body, dict):
        raise WireInvalid([NOT_AN_OBJECT])
    try:
        return model.model_validate(body, context=context)
    except ValidationError as exc:
        errors = [message_of(e, units) for e in exc.errors(include_url=False)]
        raise WireInvalid(list(dict.fromkeys(errors))) from None


class Proto3:
    """Mixed into a model that mirrors a plugNmeet proto message (zero values filled)."""

    PROTO3: ClassVar[bool] = True
