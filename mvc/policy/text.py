"""What a section parser of the policy file gets: values with their file and line.

A parser walks plain Python values (mappings, lists, scalars, as ``yamltext.load_yaml`` built
them) and calls ``ctx.fail(path, message)`` for anything it refuses, so every error reads
``mvc.yaml:12: slo.bert.window: '10 minutes' is not a duration (e.g. 90s, 10m, 1h)``.
Paths are the dotted key paths ``load_yaml`` records lines for (list items are ``key[N]``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, NoReturn, TypeVar

from mvc.errors import PolicyError

T = TypeVar("T")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_PARENT = re.compile(r"(\.[^.\[]*|\[\d+\]|^[^.\[]*)$")  # the last key or list index of a path
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class PolicyText:
    source: str  # the file's name as the user knows it, e.g. "mvc.yaml"
    lines: Mapping[str, int] = field(default_factory=dict)

    def where(self, path: str) -> str:
        """``mvc.yaml:12`` for the line ``path`` is on (or its nearest parent's), else the file."""
        probe = path
        while probe:
            if probe in self.lines:
                return f"{self.source}:{self.lines[probe]}"
            probe = _PARENT.sub("", probe)
        return self.source

    def fail(self, path: str, message: str, *, hint: str | None = None) -> NoReturn:
        raise PolicyError(
            f"{self.where(path)}: {path + ': ' if path else ''}{message}",
            hint=hint or f"fix {self.source}; docs/policy.md describes every section",
        )

    # Small typed readers every section needs; each names the path when it refuses.

    def mapping(self, path: str, value: object) -> Mapping[str, object]:
        if not isinstance(value, Mapping):
            self.fail(path, f"expected a mapping, got {_kind(value)}")
        return value

    def only_keys(self, path: str, value: Mapping[str, object], allowed: tuple[str, ...]) -> None:
        for key in value:
            if key not in allowed:
                self.fail(
                    f"{path}.{key}" if path else str(key),
                    f"unknown key {key!r}",
                    hint=f"allowed here: {', '.join(allowed)}"
                    if allowed
                    else "nothing is allowed here",
                )

    def string(self, path: str, value: object) -> str:
        if not isinstance(value, str) or not value:
            self.fail(path, f"expected a non-empty string, got {_kind(value)}")
        return value

    def number(self, path: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"expected a number, got {_kind(value)}")
        return float(value)

    def integer(self, path: str, value: object, *, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected a whole number, got {_kind(value)}")
        if minimum is not None and value < minimum:
            self.fail(path, f"must be at least {minimum}, got {value}")
        return value

    def boolean(self, path: str, value: object) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {_kind(value)}")
        return value

    def duration(self, path: str, value: object) -> float:
        """Seconds, from ``90s``, ``10m``, ``1h``, ``7d``, ``2w``, ``500ms`` (or a bare number of seconds)."""
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
        match = _DURATION.match(value.strip()) if isinstance(value, str) else None
        if match is None:
            self.fail(path, f"{value!r} is not a duration (e.g. 90s, 10m, 1h, 7d)")
        return float(match.group(1)) * _SECONDS[match.group(2)]


def parse_duration(text: str) -> float:
    """Seconds from a duration as the policy file and ``--since``/``--interval`` write them."""
    return PolicyText("--duration").duration("duration", text)


@dataclass(frozen=True)
class Section(Generic[T]):
    """One top-level key of the policy file and its parser."""

    name: str
    parse: Callable[[object, PolicyText], T]
    summary: str  # one line for docs and the unknown-key hint


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
