"""The Python API the README and docs/api.md promise: the same operations as the CLI."""

from __future__ import annotations

import json

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
