"""The ``requires:`` section of mvc.yaml: what a serving repository needs, resolved by ``mvc lock``.

::

    requires:
      bert: ^2.1                 # the model bert, its newest release in ^2.1, into models/bert
      sql-lora: prod             # whatever the prod channel serves (its stable arm)
      tokenizer:                 # the long form
        model: bert-tokenizer
        version: v1.0.0
        path: serving/tokenizer

A version is anything a spec accepts after ``MODEL@``: a tag, a range, a branch, a channel, an
id. ``path`` (default ``models/NAME``) is where ``mvc install`` materialises it, relative to
the project root.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from mvc.errors import MvcError
from mvc.policy.text import PolicyText, Section
from mvc.refnames import validate_model


@dataclass(frozen=True)
class Requirement:
    name: str  # the key in mvc.yaml (and in mvc.lock)
    model: str
    rev: str  # what follows MODEL@
    path: str  # POSIX, relative to the project root

    @property
    def spec(self) -> str:
        return f"{self.model}@{self.rev}"


def _parse(value: object, ctx: PolicyText) -> tuple[Requirement, ...]:
    entries = ctx.mapping("requires", value)
    found: list[Requirement] = []
    paths: dict[str, str] = {}
    for name, item in entries.items():
        where = f"requires.{name}"
        if isinstance(item, str | int | float) and not isinstance(item, bool):
            model, rev, path = str(name), str(item), f"models/{name}"
        else:
            body = ctx.mapping(where, item)
            ctx.only_keys(where, body, ("model", "version", "path"))
            model = ctx.string(f"{where}.model", body.get("model", name))
            rev = _rev(ctx, f"{where}.version", body.get("version"))
            path = ctx.string(f"{where}.path", body.get("path", f"models/{name}"))
        try:
            validate_model(model)
        except MvcError as exc:
            ctx.fail(where, f"{model!r} is not a model name ({exc.message})")
        if not rev.strip():
            ctx.fail(where, "needs a version: a tag, a range such as ^2.1, a branch or a channel")
        normal = posixpath.normpath(path)
        if path.startswith("/") or normal == "." or normal.startswith("../") or "\\" in path:
            ctx.fail(f"{where}.path", f"{path!r} must be a folder inside the project")
        if normal in paths:
            ctx.fail(f"{where}.path", f"{path!r} is also where {paths[normal]!r} goes")
        paths[normal] = str(name)
        found.append(Requirement(str(name), model, rev.strip(), normal))
    return tuple(found)


def _rev(ctx: PolicyText, path: str, value: object) -> str:
    if value is None:
        ctx.fail(path, "missing: write e.g. version: ^2.1")
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    ctx.fail(path, "expected a version spec such as ^2.1, v1.0.0, main or prod")


def by_name(requirements: tuple[Requirement, ...]) -> Mapping[str, Requirement]:
    return {r.name: r for r in requirements}


REQUIRES: Section[tuple[Requirement, ...]] = Section(
    "requires", _parse, "what this project serves: NAME: VERSION, locked by `mvc lock`"
)
