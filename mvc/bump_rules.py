"""Bump rules: which semver level a change between two versions calls for. Pure: no I/O.

``mvc.ops.diff`` reads the two versions and describes what changed in the value types here
(``FileChange``, ``TensorGroupDiff`` of ``TensorChange``, ``ConfigDiff``, the metadata keys that
differ), gathered in ``Changes``; ``grade(changes)`` turns that into ``Evidence``, each item with
its level, and ``highest``/``verdict`` sum it up. The rules (published in docs/versioning.md):

- MAJOR when the interface changes: tensors added, removed, renamed, reshaped or re-typed; an
  uninspectable weights file added or removed; an adapter removed; an interface config key
  (``INTERFACE_KEYS``, any nesting level); the tokenizer; a ``config.json`` (or another of
  ``INTERFACE_CONFIGS``) that cannot be parsed (conservative: whether its interface keys
  changed cannot be told; another config file that cannot be parsed is MINOR).
- Not interface changes: a buffer frameworks rebuild on load (``REBUILT_BUFFERS``:
  ``position_ids``, ``inv_freq``…) added or removed, and a config key added or removed with a
  null value or the value its absence means (``INTERFACE_DEFAULTS``): PATCH.
- MINOR when the weights change with the interface intact: tensor values, a new adapter, an
  uninspectable weights file changed, a config key that changes the computed weights
  (``WEIGHT_KEYS``: ``lora_alpha``, ``fan_in_fan_out``…), a file of unknown role (conservative).
- PATCH when only metadata, docs or other config changed.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mvc.jsonshape import JsonShaped, Shape
from mvc.objects import KIND_PICKLE, KIND_SAFETENSORS, TreeEntry
from mvc.versioning import LEVELS

TOKENIZER_FILES = frozenset(
    (
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
        "spiece.model",
        "sentencepiece.bpe.model",
        "spm.model",
        "bpe.codes",
    )
)
WEIGHT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".pkl",
    ".pickle",
    ".onnx",
    ".gguf",
    ".ggml",
    ".h5",
    ".keras",
    ".msgpack",
    ".npz",
    ".npy",
    ".tflite",
    ".pb",
)
CONFIG_SUFFIXES = (".json", ".yaml", ".yml", ".toml")
DOC_SUFFIXES = (".md", ".rst", ".txt", ".html", ".pdf", ".png", ".jpg", ".jpeg", ".gif", ".svg")
DOC_NAMES = ("readme", "license", "licence", "notice", "changelog", "citation", "authors")
# Config keys that define what goes in and comes out of a model (any nesting level).
INTERFACE_KEYS = frozenset(
    (
        "vocab_size",
        "hidden_size",
        "num_labels",
        "id2label",
        "label2id",
        "num_classes",
        "max_position_embeddings",
        "n_positions",
        "n_ctx",
        "n_embd",
        "d_model",
        "type_vocab_size",
        "model_type",
        "architectures",
        "is_encoder_decoder",
        "problem_type",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "decoder_start_token_id",
        "image_size",
        "num_channels",
        "patch_size",
        "sampling_rate",
        "feature_size",
        "num_mel_bins",
        "input_size",
        "output_size",
        # adapters: what they attach to and how
        "peft_type",
        "task_type",
        "r",
        "target_modules",
        "base_model_name_or_path",
        "modules_to_save",
    )
)
# Interface keys whose absence means this value to the frameworks that read them
# (transformers' PretrainedConfig): saving the key with it, as newer versions do, changes nothing.
INTERFACE_DEFAULTS: Mapping[str, Any] = {
    "is_encoder_decoder": False,
    "problem_type": None,
    "pad_token_id": None,
    "bos_token_id": None,
    "eos_token_id": None,
    "decoder_start_token_id": None,
    "architectures": None,
    "modules_to_save": None,
}
# The config files frameworks read a model's interface from (transformers, peft, processors).
INTERFACE_CONFIGS = frozenset(
    ("config.json", "adapter_config.json", "preprocessor_config.json", "processor_config.json")
)
# Tensors that frameworks rebuild when they load a model (non-persistent buffers): a checkpoint
# saved with or without them has the same interface. Matched on the last dotted part(s).
REBUILT_BUFFERS = ("position_ids", "inv_freq", "masked_bias", "attn.bias")
# Config keys that change the computed weights without changing the interface.
WEIGHT_KEYS = frozenset(
    ("lora_alpha", "use_rslora", "rank_pattern", "alpha_pattern", "use_dora", "fan_in_fan_out")
)


@dataclass(frozen=True)
class Evidence(JsonShaped):
    level: str  # major / minor / patch
    reason: str  # short, e.g. "tensor reshaped"
    detail: str  # what exactly, e.g. "model.safetensors: encoder.w [4, 8] -> [4, 9]"

    def __str__(self) -> str:
        return f"{self.level.upper()}: {self.reason}: {self.detail}"


def highest(levels: Iterable[str]) -> str:
    """The most consequential of ``levels`` ("none" for none)."""
    return max(levels, key=LEVELS.index, default="none")


def verdict(evidence: Sequence[Evidence]) -> str:
    """The level the evidence implies, with the reasons for it: "minor: weights changed (3)"."""
    level = highest(e.level for e in evidence)
    if level == "none":
        return "none: no difference that needs a new version"
    reasons: dict[str, int] = {}
    for item in evidence:
        if item.level == level:
            reasons[item.reason] = reasons.get(item.reason, 0) + 1
    words = [f"{r} ({n})" if n > 1 else r for r, n in reasons.items()]
    return f"{level}: " + ", ".join(words)


# --- what changed: the evidence's input ---------------------------------------------------------


@dataclass
class FileChange:
    path: str
    old: TreeEntry | None
    new: TreeEntry | None

    @property
    def status(self) -> str:
        return "added" if self.old is None else "removed" if self.new is None else "changed"

    def to_json(self) -> dict[str, Any]:
        # Hand-written: every key but the path is derived from the two tree entries.
        return {
            "path": self.path,
            "status": self.status,
            "old_size": self.old.size if self.old else None,
            "new_size": self.new.size if self.new else None,
            "kind": entry.kind if (entry := self.new or self.old) else None,
            "mode_changed": bool(
                self.old and self.new and self.old.executable != self.new.executable
            ),
            "content_changed": bool(
                self.old is None or self.new is None or self.old.b3 != self.new.b3
            ),
        }


@dataclass
class TensorChange(JsonShaped):
    name: str
    status: str  # added, removed, renamed, reshaped, retyped, changed
    old_file: str | None = None
    new_file: str | None = None
    old_dtype: str | None = None
    new_dtype: str | None = None
    old_shape: tuple[int, ...] | None = None
    new_shape: tuple[int, ...] | None = None
    renamed_from: str | None = None
    stats: dict[str, Any] | None = None


@dataclass
class TensorGroupDiff(JsonShaped):
    """Tensors of one folder's safetensors files (a sharded checkpoint is one group)."""

    folder: str
    adapter: bool
    changes: list[TensorChange] = field(default_factory=list)
    unchanged: int = 0
    skipped_identical: int = 0  # unchanged tensors recognised by chunk ids, never decoded
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # file -> key changes
    unreadable: list[str] = field(default_factory=list)  # malformed files, compared as bytes

    json_shape: ClassVar[Shape] = Shape(convert={"unreadable": lambda paths: sorted(set(paths))})


@dataclass
class ConfigDiff(JsonShaped):
    path: str
    added: dict[str, Any] = field(default_factory=dict)
    removed: dict[str, Any] = field(default_factory=dict)
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    parsed: bool = True

    json_shape: ClassVar[Shape] = Shape(
        convert={
            "changed": lambda changed: {k: {"old": a, "new": b} for k, (a, b) in changed.items()}
        }
    )


@dataclass(frozen=True)
class Changes:
    """Everything the rules look at: what differs between version A and version B."""

    files: Sequence[FileChange] = ()
    configs: Sequence[ConfigDiff] = ()  # key-level differences of config files
    tensors: Sequence[TensorGroupDiff] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)  # version metadata keys that differ
    adapters_before: frozenset[str] = frozenset()  # folders of A holding an adapter_config.json


def adapter_folders(paths: Iterable[str]) -> frozenset[str]:
    """The folders among a version's file ``paths`` that hold an adapter (adapter_config.json)."""
    return frozenset(
        posixpath.dirname(p) for p in paths if posixpath.basename(p) == "adapter_config.json"
    )


# --- the rules -----------------------------------------------------------------------------------


def file_role(path: str, kind: str) -> str:
    base = posixpath.basename(path)
    lower = base.lower()
    if lower in TOKENIZER_FILES or lower.endswith(".tiktoken"):
        return "tokenizer"
    if lower == "adapter_config.json":
        return "adapter-config"
    if lower.endswith(".index.json"):
        return "weights-index"
    if kind == KIND_SAFETENSORS:
        return "safetensors"
    if kind == KIND_PICKLE or lower.endswith(WEIGHT_SUFFIXES):
        return "weights"
    if lower.endswith(CONFIG_SUFFIXES) and ("config" in lower or lower in ("params.json",)):
        return "config"
    if (
        lower.endswith(DOC_SUFFIXES)
        or lower.split(".")[0] in DOC_NAMES
        or lower in (".gitattributes", ".gitignore")
    ):
        return "docs"
    return "other"


def config_level(key: str) -> str:
    """The level a change of config ``key`` (dotted, any nesting) calls for."""
    parts = key.split(".")
    if any(part in INTERFACE_KEYS for part in parts):
        return "major"
    return "minor" if parts[-1] in WEIGHT_KEYS else "patch"


def is_rebuilt_buffer(name: str) -> bool:
    """A tensor a framework rebuilds on load (``embeddings.position_ids``, ``rotary_emb.inv_freq``)."""
    return any(name == b or name.endswith("." + b) for b in REBUILT_BUFFERS)


def added_as_default(key: str, value: Any) -> bool:
    """A config key added (or removed) with a null value, or with the value its absence means."""
    if value is None:
        return True
    last = key.split(".")[-1]
    return (
        last in INTERFACE_DEFAULTS
        and INTERFACE_DEFAULTS[last] == value
        and (type(INTERFACE_DEFAULTS[last]) is type(value))
    )


def grade(changes: Changes) -> list[Evidence]:
    """The evidence, each item with its level, that ``changes`` call for (the rules above)."""
    found: list[Evidence] = []

    def add(level: str, reason: str, detail: str) -> None:
        found.append(Evidence(level, reason, detail))

    adapter_folders_a = changes.adapters_before
    for change in changes.files:
        entry = change.new or change.old
        assert entry is not None
        role = file_role(change.path, entry.kind)
        if (
            change.status == "changed"
            and change.old
            and change.new
            and change.old.b3 == change.new.b3
        ):
            add("patch", "file mode changed", change.path)
            continue
        if role == "tokenizer":
            add("major", f"tokenizer {change.status}", change.path)
        elif role == "safetensors":
            pass  # judged tensor by tensor below
        elif role == "weights":
            if change.status == "changed":
                add(
                    "minor",
                    "weights changed",
                    f"{change.path} (not inspectable: compared as bytes)",
                )
            else:
                add("major", f"weights file {change.status}", change.path)
        elif role == "weights-index":
            add("patch", "weights index changed", change.path)
        elif role == "adapter-config" and change.status != "changed":
            level = "minor" if change.status == "added" else "major"
            add(level, f"adapter {change.status}", change.path)
        elif role in ("config", "adapter-config"):
            pass  # judged key by key below
        elif role == "docs":
            add("patch", f"docs {change.status}", change.path)
        else:
            add("minor", f"file of unknown role {change.status}", change.path)
    new_adapter_configs = {
        c.path
        for c in changes.files
        if c.status == "added"
        and file_role(c.path, c.new.kind if c.new else "") == "adapter-config"
    }
    for config in changes.configs:
        if config.path in new_adapter_configs:
            continue  # a new adapter: judged as a whole above
        if not config.parsed:
            # What changed cannot be told; in a file the interface is read from, neither can
            # whether the interface did.
            interface = posixpath.basename(config.path).lower() in INTERFACE_CONFIGS
            add(
                "major" if interface else "minor",
                "config changed (not parseable, compared as bytes)",
                config.path,
            )
            continue
        what = [(k, f"{json.dumps(o)} -> {json.dumps(n)}") for k, (o, n) in config.changed.items()]
        what += [(k, f"added ({json.dumps(v)})") for k, v in config.added.items()]
        what += [(k, "removed") for k in config.removed]
        defaults = {k for k, v in config.added.items() if added_as_default(k, v)}
        defaults |= {k for k, v in config.removed.items() if added_as_default(k, v)}
        for key, text in what:
            if key in defaults:
                add("patch", "config key with its default value", f"{config.path}: {key} {text}")
                continue
            level = config_level(key)
            reason = "interface config changed" if level == "major" else "config changed"
            add(level, reason, f"{config.path}: {key} {text}")
    for group in changes.tensors:
        new_adapter = group.adapter and group.folder not in adapter_folders_a
        new_adapter_tensors = 0
        for tensor in group.changes:
            file = tensor.new_file or tensor.old_file
            if tensor.status == "changed":
                stats = tensor.stats
                extra = f" ({stats['changed_fraction']:.1%} of elements)" if stats else ""
                add("minor", "weights changed", f"{file}: {tensor.name}{extra}")
            elif tensor.status == "added" and new_adapter:
                new_adapter_tensors += 1
            elif tensor.status in ("added", "removed") and is_rebuilt_buffer(tensor.name):
                add("patch", f"framework buffer {tensor.status}", f"{file}: {tensor.name}")
            elif tensor.status == "renamed":
                add("major", "tensor renamed", f"{file}: {tensor.renamed_from} -> {tensor.name}")
            elif tensor.status in ("reshaped", "retyped"):
                add(
                    "major",
                    f"tensor {tensor.status}",
                    f"{file}: {tensor.name} {tensor.old_dtype} {list(tensor.old_shape or ())} -> "
                    f"{tensor.new_dtype} {list(tensor.new_shape or ())}",
                )
            else:
                add("major", f"tensor {tensor.status}", f"{file}: {tensor.name}")
        for path in sorted(set(group.unreadable)):
            add("minor", "weights changed", f"{path} (malformed safetensors: compared as bytes)")
        if new_adapter_tensors:
            add("minor", "adapter added", f"{group.folder or '.'}: {new_adapter_tensors} tensors")
        for path, keys in group.metadata.items():
            add(
                "patch",
                "safetensors metadata changed",
                f"{path}: "
                + ", ".join(sorted({*keys["added"], *keys["removed"], *keys["changed"]})),
            )
    for key, value in changes.metadata.items():
        if key == "time":
            continue
        if key in ("params", "datasets"):
            names = sorted({*value["added"], *value["removed"], *value["changed"]})
            add("patch", f"{key} changed", ", ".join(str(n) for n in names))
        elif key == "metrics":
            add("patch", "metrics changed", ", ".join(sorted(value)))
        elif key == "lineage":
            add("patch", "lineage changed", ", ".join(sorted(value)))
        else:
            add("patch", f"{key} changed", "")
    return found
