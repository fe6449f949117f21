"""Read the policy file, ``mvc.yaml`` at the project root (the folder that holds ``.mvc/``).

Each top-level key is a section (``Section`` in ``text.py``) parsed by its own module; an
unknown key is an error with its line, so a typo (``slos:``) never silently disables a guard.
A project without the file has the empty policy: no SLOs, no gates, nothing archived.

To add a section: write its parser in its own module under ``mvc/policy/`` and list it in
``SECTIONS`` in ``sections.py``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from mvc.errors import PolicyError
from mvc.policy.text import PolicyText, Section
from mvc.yamltext import YamlProblem, load_yaml

T = TypeVar("T")

POLICY_FILE = "mvc.yaml"


@dataclass(frozen=True)
class Policy:
    source: str | None = None  # the file it came from; None: no policy file
    sections: Mapping[str, object] = field(default_factory=dict)

    def get(self, section: Section[T]) -> T | None:
        """The parsed value of ``section``, or None when the file does not have it."""
        value = self.sections.get(section.name)
        return value  # type: ignore[return-value]  # parsed by section.parse, so a T


def parse_policy(text: str, source: str = POLICY_FILE) -> Policy:
    try:
        loaded = load_yaml(text, aliases=False, finite=True)
    except YamlProblem as exc:
        where = f"{source}:{exc.line}" if exc.line else source
        raise PolicyError(f"{where}: {exc.message}", hint=f"fix {source}") from exc
    ctx = PolicyText(source, loaded.lines)
    if loaded.value is None:
        return Policy(source)
    root = ctx.mapping("", loaded.value)
    from mvc.policy.sections import SECTIONS  # the parsers, only once there is a file

    known = {section.name: section for section in SECTIONS}
    ctx.only_keys("", root, tuple(known))
    return Policy(source, {name: known[name].parse(value, ctx) for name, value in root.items()})


def policy_path(project_root: str) -> str:
    return os.path.join(project_root, POLICY_FILE)


def read_policy(project_root: str) -> Policy:
    """The policy of the project at ``project_root``; the empty policy when it has no file."""
    path = policy_path(project_root)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return Policy()
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{POLICY_FILE}: not UTF-8 text ({exc.reason})") from exc
    return parse_policy(text, POLICY_FILE)
