"""Configuration: user < store < environment < flags, every key validated.

Files are YAML mappings of sections (``user: {name: Ada}``); keys are addressed dotted
(``user.name``). A broken file is a clear error naming the file, never a traceback. Credentials
never belong here: remotes get them from their backend's usual sources.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mvc.errors import InvalidInput, UsageError
from mvc.yamltext import YamlProblem, load_yaml

CONFIG_FILE = "config.yaml"


def _parse_bool(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _parse_duration(text: Any) -> float:
    """Seconds, or a number with s/m/h/d/w."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
        if not match:
            raise ValueError("expected a duration such as 90s, 30m, 2h or 14d")
        scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
        value = float(match.group(1)) * scale
    if value < 0:
        raise ValueError("a duration cannot be negative")
    if not math.isfinite(value):
        raise ValueError("a duration must be a finite number")
    return value


def _parse_positive_int(text: Any) -> int:
    value = int(str(text))
    if value <= 0:
        raise ValueError("expected a positive whole number")
    return value


def _parse_size(text: Any) -> int:
    """Bytes: a whole number, or one with K, M, G or T (powers of 1024; ``512M``, ``1GiB``)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = re.fullmatch(r"\s*(\d+)\s*(?:([KMGT])(?:i?B)?|B)?\s*", str(text), re.IGNORECASE)
        if not match:
            raise ValueError("expected a size in bytes such as 1048576, 512M or 1G")
        power = " KMGT".index((match.group(2) or " ").upper())
        value = int(match.group(1)) << (10 * power)
    if value < 0:
        raise ValueError("a size cannot be negative")
    return value


def _parse_text(text: Any) -> str:
    if not isinstance(text, str | int | float) or isinstance(text, bool):
        raise ValueError("expected text")
    return str(text)


@dataclass(frozen=True)
class Key:
    parse: Callable[[Any], Any]
    default: Any
    doc: str


KEYS: dict[str, Key] = {
    "user.name": Key(_parse_text, None, "author name recorded in versions"),
    "user.email": Key(_parse_text, None, "author e-mail recorded in versions"),
    "core.fsync": Key(_parse_bool, True, "fsync every object and ref write (durability)"),
    "checkout.fsync": Key(
        _parse_bool,
        False,
        "fsync the files checkout writes (off: files written since the last restart are "
        "re-hashed once after one instead)",
    ),
    "core.compress": Key(_parse_bool, False, "compress chunks at commit time instead of at repack"),
    "core.lock_timeout": Key(_parse_duration, 60.0, "how long to wait for a store lock"),
    "core.jobs": Key(_parse_positive_int, min(8, os.cpu_count() or 2), "parallel workers"),
    "transfer.flush_bytes": Key(
        _parse_positive_int,
        256 << 20,
        "bytes a push or pull writes between rounds of fsyncs (what a rerun resumes from)",
    ),
    "push.repack": Key(
        _parse_bool,
        True,
        "before a push, store the chunks it sends as deltas of their parents' where smaller "
        "(the remote receives the compact form)",
    ),
    "gc.grace": Key(_parse_duration, 2 * 3600.0, "age below which unreachable objects are kept"),
    "gc.repack": Key(_parse_bool, True, "compress loose objects when gc runs"),
    "repack.auto": Key(
        _parse_bool, False, "after `mvc commit`, repack what commits wrote, in the background"
    ),
    "repack.auto_bytes": Key(
        _parse_size,
        1 << 30,
        "new chunk bytes commits queue before `repack.auto` starts a background repack",
    ),
}
# Sections whose keys are open-ended (validated by their owners).
OPEN_SECTIONS = ("remote.",)


def validate(key: str, value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):  # .nan, .inf, 1e999 in YAML
        raise UsageError(f"bad value {value!r} for {key}: not a finite number")
    spec = KEYS.get(key)
    if spec is None:
        if any(key.startswith(s) and key.count(".") >= 2 for s in OPEN_SECTIONS):
            if isinstance(value, bool):  # a hand-written `anon: false` in YAML
                return "true" if value else "false"
            return _parse_text(value) if not isinstance(value, dict | list) else value
        raise UsageError(
            f"unknown config key {key!r}", hint="known keys: " + ", ".join(sorted(KEYS))
        )
    try:
        return spec.parse(value)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"bad value {value!r} for {key}: {exc}") from exc


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{key}."))
        else:
            flat[key] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in sorted(flat.items()):
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def parse_config_text(text: str, source: str) -> dict[str, Any]:
    """The validated, flattened contents of one config file.

    Read with ``load_yaml`` (mvc/yamltext.py): no tags, no aliases (a few hundred bytes of
    nested aliases would stall every command), no duplicate keys. A file that is not such
    YAML is InvalidInput (exit 1); unknown keys and bad values are usage errors (exit 2).
    Both say ``file:line``.
    """
    try:
        loaded = load_yaml(text, aliases=False)
    except YamlProblem as exc:
        raise InvalidInput(
            f"{_at(source, exc.line)}: {exc.message}", hint=f"fix or remove {source}"
        ) from exc
    tree = loaded.value
    if tree is None:  # empty, or only comments
        tree = {}
    if not isinstance(tree, dict):
        raise InvalidInput(
            f"{_at(source, 1)}: must be a mapping of sections (user: {{name: Ada}})",
            hint=f"fix {source}",
        )
    flat = flatten(tree)
    out = {}
    for key, value in flat.items():
        try:
            out[key] = validate(key, value)
        except UsageError as exc:
            raise UsageError(
                f"{_at(source, loaded.line_of(key))}: {exc.message}", hint=f"fix {source}"
            ) from exc
    return out


def _at(source: str, line: int | None) -> str:
    return f"{source}:{line}" if line else source


def render_config(flat: Mapping[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(unflatten(flat), sort_keys=True, default_flow_style=False))


def user_config_path(env: Mapping[str, str]) -> str:
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "mvc", CONFIG_FILE)


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """``MVC_USER_NAME=Ada`` sets ``user.name``; only known keys are read."""
    out = {}
    for key in KEYS:
        name = "MVC_" + key.upper().replace(".", "_")
        if name in env:
            try:
                out[key] = validate(key, env[name])
            except UsageError as exc:
                raise UsageError(f"environment variable {name}: {exc.message}") from exc
    return out


class Config:
    """The merged configuration: ``layers`` from lowest to highest precedence."""

    def __init__(self, layers: list[tuple[str, dict[str, Any]]]) -> None:
        self.layers = layers

    def get(self, key: str) -> Any:
        for _source, values in reversed(self.layers):
            if key in values:
                return values[key]
        spec = KEYS.get(key)
        return spec.default if spec else None

    def source(self, key: str) -> str | None:
        for where, values in self.layers[::-1]:  # (mypy types reversed()'s items as Any here)
            if key in values:
                return where
        return None

    def items(self) -> dict[str, Any]:
        merged: dict[str, Any] = {k: spec.default for k, spec in KEYS.items()}
        for _source, values in self.layers:
            merged.update(values)
        return merged

    def with_overrides(self, values: dict[str, Any]) -> Config:
        return Config([*self.layers, ("flags", values)])
