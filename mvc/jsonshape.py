"""The JSON document of a result value: its dataclass fields, unless its class says otherwise.

Every ``--json`` of the command line (and every ``to_json()`` of the Python API) is a result
value turned into plain JSON data. A dataclass that inherits :class:`JsonShaped` gets a
``to_json()`` that writes each field under its own name, converting values on the way:

- a value with a ``to_json()`` (a nested result) becomes its document;
- lists and tuples become lists, dicts stay dicts, both converted item by item;
- anything else (str, int, float, bool, None) is kept as it is.

Where the documented shape differs from the fields, the class says so once, in a class-level
``json_shape = Shape(...)``, instead of restating every field in a hand-written method:

- ``rename``: a field written under another name (``version_id`` -> ``version``);
- ``exclude``: fields that are not part of the document;
- ``convert``: a field's value through a function first (``len``, ``round``...);
- ``flatten``: a field whose document's keys are merged into this one;
- ``computed``: more keys, each the value of a property or no-argument method;
- ``optional``: fields (or computed keys) left out when they are None.

A ``Shape`` naming a field the class does not have is a programming error, raised at the first
``to_json()`` (and checked for every class by tests/unit/test_jsonshape.py). The shapes
themselves are documented in docs/ and pinned byte for byte by tests/cli/test_json_shapes.py.
Pure: no I/O, no mvc imports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Shape:
    """How a class's document differs from its fields (see the module docstring)."""

    rename: Mapping[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    convert: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    flatten: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    computed: Mapping[str, str] = field(default_factory=dict)  # key -> attribute


@dataclass(frozen=True)
class _Step:
    """One field of one class, planned once."""

    name: str
    key: str
    convert: Callable[[Any], Any] | None
    flatten: bool
    optional: bool


_PLANS: dict[type, tuple[_Step, ...]] = {}


def plan(cls: type) -> tuple[_Step, ...]:
    """The fields ``cls`` writes, checked against its ``json_shape`` (cached per class)."""
    found = _PLANS.get(cls)
    if found is not None:
        return found
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__qualname__} is JsonShaped but not a dataclass")
    shape: Shape = getattr(cls, "json_shape", Shape())
    names = [f.name for f in dataclasses.fields(cls)]
    named = set(shape.rename) | set(shape.exclude) | set(shape.convert) | set(shape.flatten)
    named |= set(shape.optional) - set(shape.computed)
    unknown = sorted(named - set(names))
    if unknown:
        raise TypeError(f"{cls.__qualname__}.json_shape names no field {', '.join(unknown)}")
    missing = sorted(a for a in shape.computed.values() if not hasattr(cls, a))
    if missing:
        raise TypeError(f"{cls.__qualname__}.json_shape computes from no attribute {missing}")
    steps = tuple(
        _Step(
            name=name,
            key=shape.rename.get(name, name),
            convert=shape.convert.get(name),
            flatten=name in shape.flatten,
            optional=name in shape.optional,
        )
        for name in names
        if name not in shape.exclude
    )
    _PLANS[cls] = steps
    return steps


def encode(value: Any) -> Any:
    """A value as JSON data: nested results through their ``to_json()``, containers item by
    item, scalars unchanged."""
    to_json = getattr(value, "to_json", None)
    if to_json is not None and not isinstance(value, type):
        return to_json()
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    return value


class JsonShaped:
    """Mixin for dataclasses whose JSON document is their fields (see the module docstring)."""

    json_shape: ClassVar[Shape] = Shape()

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        for step in plan(type(self)):
            value = getattr(self, step.name)
            if step.optional and value is None:
                continue
            if step.convert is not None:
                value = step.convert(value)
            value = encode(value)
            if step.flatten:
                doc.update(value)
            else:
                doc[step.key] = value
        shape = type(self).json_shape
        for key, attribute in shape.computed.items():
            value = getattr(self, attribute)
            value = value() if callable(value) else value
            if value is not None or key not in shape.optional:
                doc[key] = encode(value)
        return doc
