"""The bump rules (``mvc.bump_rules``) as a pure function: described changes in, levels out."""

from __future__ import annotations

import pytest

from mvc.bump_rules import (
    WEIGHT_KEYS,
    Changes,
    ConfigDiff,
    Evidence,
    FileChange,
    TensorChange,
    TensorGroupDiff,
    adapter_folders,
    config_level,
    grade,
    highest,
    verdict,
)
from mvc.ids import ObjectId
from mvc.objects import KIND_PICKLE, KIND_SAFETENSORS, TreeEntry


def entry(b3: str, kind: str = "other", executable: bool = False) -> TreeEntry:
    return TreeEntry(ObjectId("0" * 64), 10, b3 * 64, kind, executable)


def changed(path: str, kind: str = "other", old: str = "a", new: str = "b") -> FileChange:
    return FileChange(path, entry(old, kind), entry(new, kind))


def added(path: str, kind: str = "other") -> FileChange:
    return FileChange(path, None, entry("b", kind))


def removed(path: str, kind: str = "other") -> FileChange:
    return FileChange(path, entry("a", kind), None)


def level(changes: Changes) -> str:
    return highest(e.level for e in grade(changes))


def tensors(*changes: TensorChange, folder: str = "", adapter: bool = False) -> Changes:
    return Changes(tensors=[TensorGroupDiff(folder, adapter, list(changes))])


def config(path: str = "config.json", **changed_keys: tuple[object, object]) -> Changes:
    return Changes(configs=[ConfigDiff(path, changed=dict(changed_keys))])


@pytest.mark.parametrize(
    "changes",
    [
        tensors(TensorChange("w", "reshaped", "m.safetensors", "m.safetensors", "F32", "F32")),
        tensors(TensorChange("w", "retyped", "m.safetensors", "m.safetensors", "F32", "BF16")),
        tensors(TensorChange("w", "added", new_file="m.safetensors")),
        tensors(TensorChange("w", "removed", old_file="m.safetensors")),
        tensors(TensorChange("w2", "renamed", renamed_from="w", new_file="m.safetensors")),
        config(hidden_size=(64, 65)),
        config(**{"text_config.vocab_size": (10, 11)}),  # at any nesting level
        Changes(files=[changed("tokenizer.json")]),
        Changes(files=[removed("model.bin", KIND_PICKLE)]),
        Changes(files=[removed("lora/adapter_config.json")]),
    ],
    ids=lambda c: grade(c)[0].reason,
)
def test_interface_changes_are_major(changes: Changes) -> None:
    assert level(changes) == "major"


def test_an_unparseable_config_json_is_major_other_configs_minor() -> None:
    assert level(Changes(configs=[ConfigDiff("config.json", parsed=False)])) == "major"
    assert level(Changes(configs=[ConfigDiff("bert/adapter_config.json", parsed=False)])) == "major"
    assert level(Changes(configs=[ConfigDiff("train_config.yaml", parsed=False)])) == "minor"


@pytest.mark.parametrize(
    "changes",
    [
        # a newer transformers drops the non-persistent buffers it rebuilds on load ...
        tensors(TensorChange("embeddings.position_ids", "removed", old_file="m.safetensors")),
        tensors(TensorChange("position_ids", "added", new_file="m.safetensors")),
        tensors(TensorChange("layers.0.rotary_emb.inv_freq", "removed", old_file="m.safetensors")),
        tensors(TensorChange("h.0.attn.bias", "removed", old_file="m.safetensors")),
        # ... and saves keys with the value their absence means
        Changes(configs=[ConfigDiff("config.json", added={"bos_token_id": None})]),
        Changes(configs=[ConfigDiff("config.json", added={"text_config.eos_token_id": None})]),
        Changes(configs=[ConfigDiff("config.json", added={"is_encoder_decoder": False})]),
        Changes(configs=[ConfigDiff("config.json", removed={"pad_token_id": None})]),
    ],
    ids=lambda c: grade(c)[0].reason + ": " + grade(c)[0].detail,
)
def test_what_frameworks_rebuild_or_default_is_not_an_interface_change(changes: Changes) -> None:
    assert level(changes) == "patch"


@pytest.mark.parametrize(
    "changes",
    [
        tensors(TensorChange("h.0.attn.c_attn.bias", "removed", old_file="m.safetensors")),
        tensors(TensorChange("position_ids", "reshaped", "m.safetensors", "m.safetensors")),
        Changes(configs=[ConfigDiff("config.json", added={"bos_token_id": 1})]),
        Changes(configs=[ConfigDiff("config.json", added={"is_encoder_decoder": 0})]),
        Changes(configs=[ConfigDiff("config.json", changed={"bos_token_id": (None, 1)})]),
        Changes(configs=[ConfigDiff("config.json", removed={"eos_token_id": 2})]),
    ],
    ids=lambda c: grade(c)[0].detail,
)
def test_a_real_weight_or_a_set_token_id_still_is(changes: Changes) -> None:
    assert level(changes) == "major"


@pytest.mark.parametrize(
    "changes",
    [
        tensors(TensorChange("w", "changed", "m.safetensors", "m.safetensors")),
        tensors(TensorChange("lora_A", "added", new_file="lora/a.safetensors"), adapter=True),
        Changes(files=[added("lora/adapter_config.json")]),
        Changes(files=[changed("model.bin", KIND_PICKLE)]),
        Changes(files=[changed("run.sh")]),  # unknown role: conservative
        config("adapter_config.json", lora_alpha=(8, 16)),
        Changes(configs=[ConfigDiff("config.yaml", parsed=False)]),
    ],
    ids=lambda c: grade(c)[0].reason,
)
def test_weight_changes_with_the_interface_intact_are_minor(changes: Changes) -> None:
    assert level(changes) == "minor"


@pytest.mark.parametrize(
    "changes",
    [
        config(hidden_dropout_prob=(0.1, 0.2)),
        Changes(files=[added("README.md")]),
        Changes(files=[changed("model.safetensors.index.json")]),
        Changes(files=[FileChange("run.sh", entry("a"), entry("a", executable=True))]),
        Changes(metadata={"params": {"added": {"lr": 1}, "removed": {}, "changed": {}}}),
        Changes(metadata={"message": {"old": "a", "new": "b"}}),
        Changes(
            tensors=[
                TensorGroupDiff(
                    "",
                    False,
                    metadata={"m.safetensors": {"added": ["x"], "removed": [], "changed": []}},
                )
            ]
        ),
    ],
    ids=lambda c: grade(c)[0].reason,
)
def test_metadata_docs_and_other_config_are_patch(changes: Changes) -> None:
    assert level(changes) == "patch"


def test_nothing_changed_is_none_and_time_alone_is_nothing() -> None:
    assert level(Changes()) == "none"
    assert level(Changes(metadata={"time": {"old": "a", "new": "b"}})) == "none"
    assert verdict([]) == "none: no difference that needs a new version"


def test_a_safetensors_file_is_judged_tensor_by_tensor_not_as_a_file() -> None:
    assert grade(Changes(files=[changed("m.safetensors", KIND_SAFETENSORS)])) == []


def test_an_adapter_present_before_is_not_new() -> None:
    group = TensorChange("lora_B", "added", new_file="lora/a.safetensors")
    as_new = tensors(group, folder="lora", adapter=True)
    assert level(as_new) == "minor"
    before = Changes(
        tensors=as_new.tensors, adapters_before=adapter_folders(["lora/adapter_config.json"])
    )
    assert level(before) == "major"  # a tensor added to an existing adapter changes its shape


def test_fan_in_fan_out_changes_merged_weights_like_the_other_weight_keys() -> None:
    """Flipping ``fan_in_fan_out`` transposes how the LoRA product is added to the base: the
    merged weights change, the interface does not — graded like ``lora_alpha``."""
    assert "fan_in_fan_out" in WEIGHT_KEYS
    assert {config_level(k) for k in WEIGHT_KEYS} == {"minor"}
    flip = config("adapter_config.json", fan_in_fan_out=(False, True))
    assert grade(flip) == [
        Evidence("minor", "config changed", "adapter_config.json: fan_in_fan_out false -> true")
    ]


def test_the_verdict_names_the_reasons_at_the_top_level() -> None:
    evidence = [
        Evidence("minor", "weights changed", "a"),
        Evidence("minor", "weights changed", "b"),
        Evidence("minor", "config changed", "c"),
        Evidence("patch", "docs added", "d"),
    ]
    assert verdict(evidence) == "minor: weights changed (2), config changed"
