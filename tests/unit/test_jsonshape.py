"""mvc.jsonshape: a result's JSON document is its fields, unless its Shape says otherwise.

The documents of the real commands are pinned byte for byte by tests/cli/test_json_shapes.py;
these tests pin the mechanism, and check that every shape in mvc names real fields.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

import mvc
from mvc.jsonshape import JsonShaped, Shape, encode, plan


@dataclass(frozen=True)
class Inner(JsonShaped):
    name: str
    shape: tuple[int, ...] = (2, 3)


@dataclass
class Plain(JsonShaped):
    title: str
    inner: Inner
    items: list[Inner] = field(default_factory=list)
    by_key: dict[str, Inner] = field(default_factory=dict)
    missing: str | None = None


def test_a_document_is_the_fields_with_nested_results_converted() -> None:
    doc = Plain("t", Inner("a"), [Inner("b", (1,))], {"k": Inner("c", ())}).to_json()
    assert doc == {
        "title": "t",
        "inner": {"name": "a", "shape": [2, 3]},
        "items": [{"name": "b", "shape": [1]}],
        "by_key": {"k": {"name": "c", "shape": []}},
        "missing": None,  # None stays unless the shape says optional
    }


@dataclass
class Shaped(JsonShaped):
    version_id: str
    cache: dict[str, Any]
    seconds: float
    nested: Inner
    note: str | None = None
    deleted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.deleted

    def problems(self) -> list[str]:
        return [f"gone: {d}" for d in self.deleted]

    @property
    def maybe(self) -> str | None:
        return None

    json_shape: ClassVar[Shape] = Shape(
        rename={"version_id": "version", "seconds": "duration_seconds"},
        exclude=("cache",),
        convert={"seconds": lambda s: round(s, 3), "deleted": len},
        flatten=("nested",),
        optional=("note", "maybe"),
        computed={"ok": "ok", "problems": "problems", "maybe": "maybe"},
    )


def test_a_shape_renames_excludes_converts_flattens_omits_and_computes() -> None:
    value = Shaped("v1", {"x": 1}, 1.23456, Inner("n"), deleted=["a", "b"])
    assert value.to_json() == {
        "version": "v1",
        "duration_seconds": 1.235,
        "name": "n",
        "shape": [2, 3],
        "deleted": 2,
        "ok": False,
        "problems": ["gone: a", "gone: b"],
    }
    assert Shaped("v2", {}, 0.0, Inner("n"), note="kept").to_json()["note"] == "kept"


@dataclass
class Child(Plain):
    extra: int = 7


def test_a_subclass_writes_its_parents_fields_then_its_own() -> None:
    doc = Child("t", Inner("a")).to_json()
    assert list(doc) == ["title", "inner", "items", "by_key", "missing", "extra"]


def test_a_shape_naming_no_field_is_refused() -> None:
    @dataclass
    class Typo(JsonShaped):
        name: str
        json_shape: ClassVar[Shape] = Shape(rename={"nmae": "title"})

    with pytest.raises(TypeError, match="Typo.json_shape names no field nmae"):
        Typo("x").to_json()

    @dataclass
    class NoAttribute(JsonShaped):
        name: str
        json_shape: ClassVar[Shape] = Shape(computed={"ok": "is_ok"})

    with pytest.raises(TypeError, match="computes from no attribute"):
        NoAttribute("x").to_json()


def test_only_dataclasses_are_shaped() -> None:
    class NotData(JsonShaped):
        pass

    with pytest.raises(TypeError, match="not a dataclass"):
        NotData().to_json()


def test_encode_keeps_scalars_and_walks_containers() -> None:
    assert encode({"a": (1, [2.5, None]), "b": True, "c": "s"}) == {
        "a": [1, [2.5, None]],
        "b": True,
        "c": "s",
    }


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_every_shape_in_mvc_names_real_fields() -> None:
    for module in pkgutil.walk_packages(mvc.__path__, "mvc."):
        if not module.name.startswith(("mvc.__main__", "mvc.cli")):  # no results; __main__ runs
            importlib.import_module(module.name)
    shaped = [c for c in _subclasses(JsonShaped) if c.__module__.startswith("mvc.")]
    assert len(shaped) >= 40  # the result values of every --json command
    for cls in shaped:
        assert plan(cls), cls  # raises TypeError on a shape that names no field
