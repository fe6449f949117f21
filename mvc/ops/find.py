"""``find``: versions across models that match every condition given.

Conditions: model (glob), tag (a tag name or a semver range), ``--param KEY=VALUE``,
``--where 'accuracy>=0.9'`` (annotation metrics first, then commit metrics, then params), dataset (name, URI or hash prefix),
base model (a model name, or a spec for one exact base version), and a time window. Versions come
from the catalog (``mvc.ops.catalog``), so a query reads the refs and only the versions it has
never seen before; everything else is answered from memory.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field
from typing import Any

from mvc.canonical import parse_scalar
from mvc.errors import UsageError
from mvc.ids import ObjectId
from mvc.instants import parse_instant
from mvc.ops.annotate import annotated_metrics
from mvc.ops.catalog import Catalog, Name, load_catalog
from mvc.refnames import NOTES, RefName
from mvc.repo import Repo
from mvc.specs import resolve
from mvc.versioning import normalize_tag, parse_range, parse_semver

_WHERE = re.compile(
    r"^\s*(?P<key>[^<>=!\s]+)\s*(?P<op>>=|<=|==|!=|=|>|<)\s*(?P<value>[^<>=!\s].*?)\s*$"
)


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: Any

    def test(self, found: Any) -> bool:
        if found is None or isinstance(found, dict | list):
            return False
        if _number(self.value) and _number(found):
            a, b = float(found), float(self.value)
            return {
                ">=": a >= b,
                "<=": a <= b,
                ">": a > b,
                "<": a < b,
                "=": math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0) or a == b,
                "!=": a != b,
            }[self.op]
        if self.op in ("=", "!="):
            return (str(found) == str(self.value)) == (self.op == "=")
        return False

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_where(text: str) -> Condition:
    match = _WHERE.match(text)
    if not match:
        raise UsageError(
            f"--where {text!r} is not KEY OP VALUE",
            hint="e.g. --where 'accuracy>=0.9' (operators: >= <= > < = !=)",
        )
    op = "=" if match.group("op") == "==" else match.group("op")
    return Condition(match.group("key"), op, parse_scalar(match.group("value")))


def _instant(text: str) -> str:
    return parse_instant(text).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Query:
    models: list[str] = field(default_factory=list)  # globs
    tag: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    where: list[Condition] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    base: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int | None = None


@dataclass
class Found:
    id: ObjectId
    record: dict[str, Any]
    names: list[Name]
    annotated: dict[str, float] = field(default_factory=dict)  # annotation metrics, newest

    def to_json(self) -> dict[str, Any]:
        # Hand-written: the keys come from the stored version record (a dict), not from fields.
        r = self.record
        return {
            "id": self.id,
            "model": r.get("model"),
            "time": r.get("time"),
            "author": r.get("author"),
            "message": r.get("message"),
            "params": r.get("params", {}),
            "metrics": r.get("metrics", {}),
            "annotated_metrics": self.annotated,
            "lineage": r.get("lineage", {}),
            "names": [n.to_json() for n in self.names],
        }


def _tag_matcher(text: str) -> Any:
    """A tag name (``v1.2.0``, ``baseline``) matches itself; anything else is a semver range."""
    if parse_semver(text) is not None:
        exact = normalize_tag(text)
        return lambda name: name == exact
    try:
        rng = parse_range(text)
    except UsageError:
        plain = normalize_tag(text)
        return lambda name: name == plain

    def in_range(name: str) -> bool:
        version = parse_semver(name)
        return version is not None and rng.matches(version)

    return in_range


def _dataset_matches(entry: Any, wanted: str) -> bool:
    if not isinstance(entry, dict):
        return False
    digest = str(entry.get("hash") or "")
    bare = digest.split(":", 1)[1] if ":" in digest else digest
    return wanted in (entry.get("name"), entry.get("uri"), digest) or (
        len(wanted) >= 6 and bool(digest) and (digest.startswith(wanted) or bare.startswith(wanted))
    )


def _annotated(
    repo: Repo, heads: dict[tuple[str, str], RefName], model: str, oid: ObjectId
) -> dict[str, float]:
    return annotated_metrics(repo, model, oid) if (model, oid) in heads else {}


def find(repo: Repo, query: Query, *, catalog: Catalog | None = None) -> list[Found]:
    models = None
    if query.models:
        models = [
            m
            for m in repo.refs.models()
            if any(fnmatch.fnmatchcase(m, pat) for pat in query.models)
        ]
    catalog = catalog or load_catalog(repo, models)
    base_model, base_version = None, None
    if query.base:
        if "@" in query.base:
            base_version = resolve(repo, query.base).version
        else:
            base_model = query.base
    tag_ok = _tag_matcher(query.tag) if query.tag else None
    since = _instant(query.since) if query.since else None
    until = _instant(query.until) if query.until else None
    wanted_models = set(models) if models is not None else None
    notes_heads = {
        (ref.model, ref.name): ref for ref in repo.refs.list_refs(NOTES, None)
    }  # one listing; a version's chain is read only when it has notes
    out: list[Found] = []
    for oid, record in catalog.live():
        model = record.get("model")
        if wanted_models is not None and model not in wanted_models:
            continue
        time = str(record.get("time", ""))
        if since and time < since or until and time > until:
            continue
        params = record.get("params") or {}
        annotated = _annotated(repo, notes_heads, str(model), oid)
        metrics = {**(record.get("metrics") or {}), **annotated}  # an annotation is newer
        if any(
            params.get(k) != v and str(params.get(k)) != str(v) for k, v in query.params.items()
        ):
            continue
        if not all(c.test(metrics.get(c.key, params.get(c.key))) for c in query.where):
            continue
        lineage = record.get("lineage") or {}
        if query.datasets and not all(
            any(_dataset_matches(d, w) for d in lineage.get("datasets", []) or [])
            for w in query.datasets
        ):
            continue
        if query.base:
            base: dict[str, Any] = lineage.get("base") or {}
            if not isinstance(base, dict):
                continue
            if base_model is not None and base.get("model") != base_model:
                continue
            if base_version is not None and base.get("version") != base_version:
                continue
        names = catalog.names_of(oid)
        if tag_ok is not None and not any(
            n.kind == "tag" and n.model == model and tag_ok(n.name) for n in names
        ):
            continue
        out.append(Found(oid, record, names, annotated))
    out.sort(key=lambda f: (str(f.record.get("time", "")), f.id), reverse=True)
    return out[: query.limit] if query.limit is not None else out
