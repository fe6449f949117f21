"""``mvc.lock``: the exact versions a project's ``requires:`` resolved to.

Written by mvc (``mvc lock``), reviewed in pull requests, read back by ``mvc install --locked``.
One model per block, one fact per line, keys in a fixed order, so a changed version is a
two-line diff::

    # mvc.lock: written by `mvc lock` from the requires: of mvc.yaml. Do not edit; commit it.
    lockfile: 1
    models:
      bert:
        spec: bert@^2.1
        path: models/bert
        version: 3f4f73a0885af5cf52cf2dee2554bfd7f1ceb0b1756fdf354576c44521ae9e0b
        tree: 9c1e...
        resolved: v2.1.3

Pure: text in, text out. Reading is the bounded YAML loader; anything malformed is an error that
says to run ``mvc lock`` again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mvc.errors import StaleLock
from mvc.ids import ObjectId, is_object_id
from mvc.yamltext import YamlProblem, load_yaml

LOCK_FILE = "mvc.lock"
LOCKFILE_VERSION = 1
_HEADER = (
    "# mvc.lock: written by `mvc lock` from the requires: of mvc.yaml. Do not edit; commit it.\n"
)


@dataclass(frozen=True)
class Locked:
    name: str
    spec: str  # MODEL@REV as mvc.yaml asked when the lock was made
    path: str
    version: ObjectId
    tree: ObjectId  # the content hash: what install checks the materialised files against
    resolved: str | None = None  # a tag or channel that named the version then (for people)

    @property
    def model(self) -> str:
        return self.spec.partition("@")[0]


def render_lock(entries: list[Locked]) -> str:
    lines = [
        _HEADER,
        f"lockfile: {LOCKFILE_VERSION}\n",
        "models:" + (" {}\n" if not entries else "\n"),
    ]
    for entry in sorted(entries, key=lambda e: e.name):
        lines.append(f"  {_scalar(entry.name)}:\n")
        lines.append(f"    spec: {_scalar(entry.spec)}\n")
        lines.append(f"    path: {_scalar(entry.path)}\n")
        lines.append(f"    version: {entry.version}\n")
        lines.append(f"    tree: {entry.tree}\n")
        if entry.resolved:
            lines.append(f"    resolved: {_scalar(entry.resolved)}\n")
    return "".join(lines)


def parse_lock(text: str, source: str = LOCK_FILE) -> list[Locked]:
    hint = "run `mvc lock` to write it again from mvc.yaml"
    try:
        loaded = load_yaml(text, aliases=False)
    except YamlProblem as exc:
        where = f"{source}:{exc.line}" if exc.line else source
        raise StaleLock(f"{where}: {exc.message}", hint=hint) from exc
    doc = loaded.value
    if not isinstance(doc, dict) or doc.get("lockfile") != LOCKFILE_VERSION:
        raise StaleLock(f"{source}: not an mvc.lock of format {LOCKFILE_VERSION}", hint=hint)
    models = doc.get("models")
    if not isinstance(models, dict):
        raise StaleLock(f"{source}: no 'models' mapping", hint=hint)
    entries = []
    for name, body in models.items():
        line = loaded.line_of(f"models.{name}")
        where = f"{source}:{line}" if line else source
        if not isinstance(body, dict):
            raise StaleLock(f"{where}: entry {name!r} is not a mapping", hint=hint)
        spec, path = body.get("spec"), body.get("path")
        version, tree = body.get("version"), body.get("tree")
        resolved = body.get("resolved")
        if not (isinstance(spec, str) and "@" in spec and isinstance(path, str)):
            raise StaleLock(f"{where}: entry {name!r} lacks spec or path", hint=hint)
        if not (isinstance(version, str) and is_object_id(version)):
            raise StaleLock(f"{where}: entry {name!r} has no version id", hint=hint)
        if not (isinstance(tree, str) and is_object_id(tree)):
            raise StaleLock(f"{where}: entry {name!r} has no tree id", hint=hint)
        entries.append(
            Locked(
                str(name),
                spec,
                path,
                ObjectId(version),
                ObjectId(tree),
                resolved if isinstance(resolved, str) else None,
            )
        )
    return entries


def _scalar(text: str) -> str:
    """A YAML scalar that reads back as exactly ``text`` (quoted when YAML would change it)."""
    plain = text and text.strip() == text and not any(c in text for c in ":#{}[],&*!|>'\"%@`")
    if plain and text.lower() not in ("null", "true", "false", "yes", "no", "on", "off", "~"):
        try:
            float(text)
        except ValueError:
            return text
    return json.dumps(text)
