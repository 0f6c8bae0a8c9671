"""The room metadata as LiveKit stores it: one JSON text, spelled exactly as Python's `json` would.

pydantic writes the validated metadata in one step (in Rust); the only values it spells
differently are floats (`1e-7` where `json` writes `1e-07`), and only unknown keys can hold one,
so metadata holding a float is written by `json` instead. The stored text reaches LiveKit, the
API's answers and the webhooks, so it must not change with the writer.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from worker.wire import unwrap


def _holds_float(value: Any) -> bool:
    """Whether a float is anywhere in a plain JSON value."""
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_holds_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_float(v) for v in value)
    return False


# Per model: its fields holding a model, and those not typed as a scalar (bool, int, str).
_SHAPES: dict[type[BaseModel], tuple[list[str], list[str]]] = {}


def _shape(model: type[BaseModel]) -> tuple[list[str], list[str]]:
    found = _SHAPES.get(model)
    if found is None:
        models, others = [], []
        for name, info in model.model_fields.items():
            tp, _ = unwrap(info.annotation)
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                models.append(name)
            elif tp not in (bool, int, str):
                others.append(name)
        found = _SHAPES[model] = (models, others)
    return found


def _model_holds_float(model: BaseModel) -> bool:
    """Whether a float is anywhere in a validated model: its extras, untyped fields, sub-models."""
    extra = model.__pydantic_extra__
    if extra and _holds_float(extra):
        return True
    models, others = _SHAPES.get(type(model)) or _shape(type(model))
    values = model.__dict__
    for name in others:
        value = values[name]
        if value is not None and not isinstance(value, str) and _holds_float(value):
            return True
    for name in models:
        value = values[name]
        if value is not None and _model_holds_float(value):
            return True
    return False


# Every digit as "0" and each of `.`, `e`, `E` as ".": a float's text has a digit right before
# one of them, so without `0.` in the translated text there is none. One search, not three
# (each a scan of the whole text, over a kilobyte with every feature's default written out).
_FLOAT_MARKS = bytes.maketrans(b"0123456789eE", b"0000000000..")


def metadata_json_of(metadata: BaseModel) -> str:
    """The metadata as LiveKit stores it: compact JSON, UTF-8 as is, `None` members left out.

    pydantic writes it in Rust, but spells floats differently from Python (`1e-7`, not
    `1e-07`), so metadata holding a float (only unknown keys can) is written by `json` as ever.
    """
    try:
        text: str | None = metadata.model_dump_json(exclude_none=True)
    except PydanticSerializationError:  # what pydantic will not write (a huge integer)
        text = None
    if text is not None:
        if b"0." not in text.encode().translate(_FLOAT_MARKS):
            return text
        if not _model_holds_float(metadata):  # "1.2" in a string, say
            return text
    data = metadata.model_dump(exclude_none=True)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
