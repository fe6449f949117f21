"""The Python API the README and docs/api.md promise: the same operations as the CLI."""

from __future__ import annotations

import json
import typing
from typing import Any

import numpy as np
import pytest

import mvc


def test_commit_resolve_read_and_load_through_the_api(tmp_path, mvc_env, make_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    repo = mvc.init_repo(str(tmp_path))
    make_model(str(tmp_path / "models" / "bert"), seed=1)
    first = mvc.commit("models/bert", "baseline", repo=repo, metrics={"accuracy": 0.9})
    assert first.created and len(first.version_id) == 64
    make_model(str(tmp_path / "models" / "bert"), seed=2)
    second = mvc.commit("models/bert", "retrained", repo=repo, params={"lr": 2e-5})

    assert mvc.resolve("bert@main~1", repo=repo).version == first.version_id
    assert [e.id for e in mvc.log("bert", repo=repo)] == [second.version_id, first.version_id]
    details = mvc.show("bert", repo=repo)
    assert details.version.params == {"lr": 2e-5}
    config = json.loads(mvc.read_file(f"bert@{first.version_id[:12]}", "config.json", repo=repo))
    assert isinstance(config, dict)

    tensors = mvc.load("bert@main~1", repo=str(tmp_path))
    on_disk = mvc.load("bert", repo=repo)
    assert tensors.keys() == on_disk.keys()
    assert any(not np.array_equal(tensors[k], on_disk[k]) for k in tensors)

    with pytest.raises(mvc.MvcError) as error:
        mvc.resolve("bert@nope", repo=repo)
    assert error.value.hint


def test_every_public_name_is_reachable_from_the_package() -> None:
    from mvc import api

    assert set(api.__all__) == mvc._API_NAMES
    for name in api.__all__:
        assert getattr(mvc, name) is getattr(api, name)


def _public_api() -> dict[str, object]:
    """The re-exported names, and every public function defined in mvc.api."""
    import inspect

    from mvc import api

    defined = {
        name: value
        for name, value in vars(api).items()
        if inspect.isfunction(value) and value.__module__ == api.__name__ and name[0] != "_"
    }
    return {**{name: getattr(api, name) for name in mvc._API_NAMES}, **defined}


def _mentions_any(hint: object) -> bool:
    if hint is typing.Any:
        return True
    if isinstance(hint, list):  # the parameter list of a Callable
        return any(_mentions_any(item) for item in hint)
    return any(_mentions_any(arg) for arg in typing.get_args(hint))


def _torch_names() -> Any:
    """torch for the hints of ``load(framework="pt")``: the real module where it is installed,
    else a namespace with a Tensor class (only the hints' names are checked here)."""
    try:
        import torch
    except ImportError:
        import types

        return types.SimpleNamespace(Tensor=type("Tensor", (), {}))
    return torch


def test_public_signatures_are_typed_without_any() -> None:
    """Every function's parameters and return, and every class's constructor, name real types.
    numpy is imported only for type checkers in mvc.api (``import mvc`` stays light), so the
    check supplies it."""
    import inspect

    found = _public_api()
    assert {"load", "commit", "resolve", "show", "checkout", "iter_file", "read_tensors"} <= set(
        found
    )
    for name, value in found.items():
        target = value.__init__ if inspect.isclass(value) else value
        hints = typing.get_type_hints(target, localns={"np": np, "torch": _torch_names()})
        parameters = [
            p
            for p in inspect.signature(target).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        missing = [p.name for p in parameters if p.name not in hints]
        assert not missing, f"{name}: parameters without a type: {missing}"
        assert "return" in hints, f"{name} does not say what it returns"
        untyped = {key: hint for key, hint in hints.items() if _mentions_any(hint)}
        assert not untyped, f"{name} has Any in its signature: {untyped}"
        assert not any(
            p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            for p in inspect.signature(target).parameters.values()
        ), f"{name} takes **kwargs/*args: name its parameters"


def test_dir_and_help_show_the_public_api() -> None:
    import pydoc

    listed = dir(mvc)
    assert set(mvc._API_NAMES) <= set(listed) and "__version__" in listed
    assert sorted(mvc.__all__) == sorted(mvc._API_NAMES)
    text = pydoc.render_doc(mvc, renderer=pydoc.plaintext)
    for name in sorted(mvc._API_NAMES):
        value = getattr(mvc, name)
        assert (f"class {name}" if isinstance(value, type) else f"{name}(") in text, name
    assert "load(spec: 'str'" in text  # with its typed signature


def test_type_checkers_see_the_same_names() -> None:
    """mvc/__init__.py imports the API under TYPE_CHECKING, so a type checker sees real
    signatures where the lazy ``__getattr__`` would give it nothing: the same names."""
    import ast
    import pathlib

    tree = ast.parse(pathlib.Path(mvc.__file__).read_text(encoding="utf-8"))
    guarded = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
        for statement in node.body
        if isinstance(statement, ast.ImportFrom) and statement.module == "mvc.api"
        for alias in statement.names
    }
    assert guarded == set(mvc._API_NAMES)
