"""``mvc explain MODEL CHANNEL``: what differs between a channel's stable and candidate arms.

Three questions, answered side by side so the person paged sees at once whether it was the
model, its data or the serving environment:

- **the model**: the diff of the two arms' versions (``ops.diff``: weights per tensor, config,
  tokenizer files, version metadata: params, datasets, code commit, base model and adapter
  lineage), and of their adapters when they serve different ones;
- **the metrics**: each metric's summary per arm over the rollout step's window, and how the
  candidate's moved against the baseline's;
- **the serving environment**: the sources each arm's points came from (host, process, Python,
  key package versions, platform, hardware), as the metric store recorded them, and which of
  those differ between the arms.

A channel that is settled because its last move was a rollback is explained as it was just
before that rollback (what was rolled back, against what it ran beside). Reads only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mvc.deployment.analysis import GUARDED, Arms, format_epoch, guarded_arms
from mvc.deployment.records import Arm, Record
from mvc.errors import UsageError
from mvc.ids import ObjectId, short
from mvc.instants import parse_instant
from mvc.jsonshape import JsonShaped, Shape
from mvc.metrics.model import Query, Summary
from mvc.metrics.sqlite import MetricsDB
from mvc.ops.channels import Namer, load_record, require_current
from mvc.ops.diff import DiffResult, diff_config, diff_versions
from mvc.remotes import ensure_present
from mvc.repo import Repo

SHOWN_KEYS = 6  # keys of a changed config or tokenizer file named in a finding
MOVED = 0.05  # a metric whose mean moved this much (relative) is a finding
_TOKENIZER_HINTS = ("tokenizer", "vocab", "merges.txt", "special_tokens", "sentencepiece", ".spm")


def summary_json(summary: Summary) -> dict[str, Any]:
    return dataclasses.asdict(summary)


@dataclass
class Side(JsonShaped):
    """One arm: what it serves."""

    label: str
    role: str
    weight: int
    version: ObjectId
    name: str  # bert@v1.5.0
    adapter: ObjectId | None = None
    adapter_model: str | None = None


@dataclass
class MetricMove(JsonShaped):
    """One metric's summary on each arm, and the candidate's change of mean and p99."""

    name: str
    baseline: Summary
    candidate: Summary
    mean_change: float | None  # relative: (candidate - baseline) / |baseline|
    p99_change: float | None

    json_shape: ClassVar[Shape] = Shape(
        convert={"baseline": summary_json, "candidate": summary_json}
    )


@dataclass
class Environment(JsonShaped):
    """One source of an arm's points: a host, a process, its serving environment."""

    host: str
    process: str
    environment: dict[str, str]
    points: int


@dataclass
class Finding(JsonShaped):
    """One line of the summary: what kind of thing differs (``weights``, ``config``,
    ``tokenizer``, ``datasets``, ``code``, ``params``, ``base``, ``adapter``, ``metrics``,
    ``environment``) and how."""

    kind: str
    detail: str


@dataclass
class Explanation(JsonShaped):
    model: str
    channel: str
    record: ObjectId
    state: str
    rolled_back_by: ObjectId | None  # set when the explained record was rolled back
    baseline: Side
    candidate: Side
    since: str
    until: str
    findings: list[Finding] = field(default_factory=list)
    metrics: list[MetricMove] = field(default_factory=list)
    environments: dict[str, list[Environment]] = field(default_factory=dict)  # label -> sources
    diff: DiffResult | None = None  # None: both arms serve the same version
    adapter_diff: DiffResult | None = None

    def kinds(self) -> list[str]:
        return list(dict.fromkeys(f.kind for f in self.findings))

    json_shape: ClassVar[Shape] = Shape(computed={"kinds": "kinds"})


def explain(
    repo: Repo,
    model: str,
    channel: str,
    *,
    arm: str | None = None,
    record: Record | None = None,
    since: float | None = None,
    stats: bool = True,
) -> Explanation:
    """Explain the channel's candidate against its baseline (``record``: explain that record
    instead of the channel's current one, as the guard does before it rolls back)."""
    current = record or require_current(repo, model, channel)
    explained, rolled_back_by, until = _explained(repo, current, repo.clock().timestamp())
    arms = guarded_arms(explained, arm)
    if arms is None:
        raise UsageError(
            f"channel {channel!r} of {model!r} serves one version (state {explained.state!r}): "
            "there is no candidate to explain",
            hint=f"compare versions with `mvc diff`, or see `mvc channel history {model} {channel}`",
        )
    start = since if since is not None else parse_instant(explained.when).timestamp()
    namer = Namer(repo)
    result = Explanation(
        model,
        channel,
        explained.id or ObjectId(""),
        explained.state,
        rolled_back_by,
        _side(namer, model, arms.baseline),
        _side(namer, model, arms.candidate),
        format_epoch(start),
        format_epoch(until),
    )
    _model_changes(repo, arms, result, stats)
    _metric_changes(repo, model, channel, arms, start, until, result)
    return result


def _explained(repo: Repo, record: Record, now: float) -> tuple[Record, ObjectId | None, float]:
    """The record to explain, the rollback that ended it (if any), and the window's end."""
    if record.state not in GUARDED and record.action == "rollback" and record.previous:
        before = load_record(repo, record.previous)
        if before.state in GUARDED:
            return before, record.id, parse_instant(record.when).timestamp()
    return record, None, now


def _side(namer: Namer, model: str, arm: Arm) -> Side:
    return Side(
        arm.label,
        arm.role,
        arm.weight,
        arm.version,
        namer.target(model, arm.target),
        arm.adapter.version if arm.adapter else None,
        arm.adapter.model if arm.adapter else None,
    )


# --- the model ------------------------------------------------------------------------------------


def _model_changes(repo: Repo, arms: Arms, result: Explanation, stats: bool) -> None:
    a, b = arms.baseline, arms.candidate
    if a.version != b.version:
        if stats:
            ensure_present(repo, a.version)
            ensure_present(repo, b.version)
        result.diff = diff_versions(repo, a.version, b.version, stats=stats)
        result.findings.extend(_findings(repo, result.diff, ""))
    if a.adapter != b.adapter:
        if a.adapter and b.adapter:
            if stats:
                ensure_present(repo, a.adapter.version)
                ensure_present(repo, b.adapter.version)
            result.adapter_diff = diff_versions(
                repo, a.adapter.version, b.adapter.version, stats=stats
            )
            result.findings.append(
                Finding(
                    "adapter",
                    f"adapter {a.adapter.model}@{short(a.adapter.version)} -> "
                    f"{b.adapter.model}@{short(b.adapter.version)}",
                )
            )
            result.findings.extend(_findings(repo, result.adapter_diff, "adapter "))
        else:
            old = f"{a.adapter.model}@{short(a.adapter.version)}" if a.adapter else "none"
            new = f"{b.adapter.model}@{short(b.adapter.version)}" if b.adapter else "none"
            result.findings.append(Finding("adapter", f"adapter {old} -> {new}"))


def _findings(repo: Repo, diff: DiffResult, prefix: str) -> list[Finding]:
    found: list[Finding] = []
    for group in diff.tensors:
        changed = list(group.changes)
        if not changed:
            continue
        kinds: dict[str, int] = {}
        for t in changed:
            kinds[t.status] = kinds.get(t.status, 0) + 1
        worst = _most_changed(changed)
        detail = (
            f"{prefix}tensors in {group.folder or '.'}: "
            + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
            + f", {group.unchanged} unchanged"
            + (f"; most changed {worst}" if worst else "")
        )
        found.append(Finding("weights", detail))
    configs = list(diff.configs)
    config_paths = {c.path for c in configs}
    for change in diff.files:
        if change.path in config_paths or not _is_tokenizer(change.path):
            continue
        if change.path.endswith((".json", ".yaml", ".yml")) and change.old and change.new:
            configs.append(diff_config(repo, diff.a, diff.b, change.path))  # key by key
        else:
            found.append(Finding("tokenizer", f"{prefix}{change.path} {change.status}"))
    for config in configs:
        kind = "tokenizer" if _is_tokenizer(config.path) else "config"
        keys = [*config.changed, *config.added, *config.removed]
        shown = ", ".join(
            f"{k}: {config.changed[k][0]!r} -> {config.changed[k][1]!r}"
            if k in config.changed
            else (f"+{k}" if k in config.added else f"-{k}")
            for k in keys[:SHOWN_KEYS]
        )
        more = f" (and {len(keys) - SHOWN_KEYS} more keys)" if len(keys) > SHOWN_KEYS else ""
        found.append(
            Finding(kind, f"{prefix}{config.path}: " + (shown + more or "changed (not parsed)"))
        )
    meta = diff.metadata
    for name, value in meta.get("datasets", {}).get("changed", {}).items():
        old, new = value.get("old") or {}, value.get("new") or {}
        found.append(
            Finding(
                "datasets",
                f"{prefix}dataset {name}: {old.get('uri', old.get('hash', '?'))} -> "
                f"{new.get('uri', new.get('hash', '?'))}",
            )
        )
    for name in meta.get("datasets", {}).get("added", {}):
        found.append(Finding("datasets", f"{prefix}dataset {name} added"))
    for name in meta.get("datasets", {}).get("removed", {}):
        found.append(Finding("datasets", f"{prefix}dataset {name} removed"))
    if "git" in meta:
        old = (meta["git"]["old"] or {}).get("commit") or "-"
        new = (meta["git"]["new"] or {}).get("commit") or "-"
        dirty = " (dirty)" if (meta["git"]["new"] or {}).get("dirty") else ""
        found.append(Finding("code", f"{prefix}code commit {old[:12]} -> {new[:12]}{dirty}"))
    params = meta.get("params", {})
    for name, value in params.get("changed", {}).items():
        found.append(Finding("params", f"{prefix}param {name}: {value['old']} -> {value['new']}"))
    for name, value in params.get("added", {}).items():
        found.append(Finding("params", f"{prefix}param {name} = {value} (new)"))
    for name in params.get("removed", {}):
        found.append(Finding("params", f"{prefix}param {name} removed"))
    for key, value in meta.get("lineage", {}).items():
        kind = "base" if key in ("base", "derived_from") else "adapter"
        old, new = value["old"], value["new"]
        if isinstance(old, dict) and isinstance(new, dict) and not _is_ref(old):
            changes = ", ".join(
                f"{k} {old.get(k)!r} -> {new.get(k)!r}"
                for k in sorted(old.keys() | new.keys())
                if old.get(k) != new.get(k)
            )
            found.append(Finding(kind, f"{prefix}lineage {key}: {changes}"))
        else:
            found.append(Finding(kind, f"{prefix}lineage {key}: {_ref(old)} -> {_ref(new)}"))
    return found


def _most_changed(changes: list[Any]) -> str | None:
    scored = [
        (t.stats.get("relative_l2") or 0.0, t.name)
        for t in changes
        if t.status == "changed" and t.stats
    ]
    if not scored:
        return None
    value, name = max(scored)
    return f"{name} (rel-L2 {value:.3g})"


def _is_tokenizer(path: str) -> bool:
    leaf = path.rsplit("/", 1)[-1].lower()
    return any(hint in leaf for hint in _TOKENIZER_HINTS)


def _is_ref(value: dict[str, Any]) -> bool:
    return bool(value.get("model")) and isinstance(value.get("version"), str)


def _ref(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_ref(item) for item in value) or "none"
    if isinstance(value, dict):
        model, version = value.get("model"), value.get("version")
        if model and isinstance(version, str):
            return f"{model}@{version[:12]}"
    return "none" if value is None else str(value)


# --- the metrics and where they came from ---------------------------------------------------------


def _metric_changes(
    repo: Repo,
    model: str,
    channel: str,
    arms: Arms,
    since: float,
    until: float,
    result: Explanation,
) -> None:
    with MetricsDB.open(repo, create=False) as db:
        names = db.names(model, channel=channel)
        for name in names:
            a = db.summary(_query(model, name, channel, arms.baseline, since, until))
            b = db.summary(_query(model, name, channel, arms.candidate, since, until))
            if not a.count and not b.count:
                continue
            move = MetricMove(name, a, b, _change(a.mean, b.mean), _change(a.p99, b.p99))
            result.metrics.append(move)
            if _moved(a, b, move.mean_change):
                change = f" ({move.mean_change:+.0%})" if move.mean_change is not None else ""
                result.findings.append(
                    Finding(
                        "metrics",
                        f"{name}: mean {_num(a.mean)} -> {_num(b.mean)}{change}, "
                        f"p99 {_num(a.p99)} -> {_num(b.p99)}",
                    )
                )
        for side in (arms.baseline, arms.candidate):
            uses = db.sources(_query(model, "", channel, side, since, until))
            result.environments[side.label] = [
                Environment(u.source.host, u.source.process, dict(u.source.environment), u.points)
                for u in uses
            ]
    result.findings.extend(_environment_findings(result, arms))


def _environment_findings(result: Explanation, arms: Arms) -> list[Finding]:
    a = result.environments.get(arms.baseline.label, [])
    b = result.environments.get(arms.candidate.label, [])
    if not a or not b:
        return []
    found = []
    hosts_a, hosts_b = sorted({e.host for e in a}), sorted({e.host for e in b})
    if hosts_a != hosts_b:
        found.append(Finding("environment", f"hosts {', '.join(hosts_a)} -> {', '.join(hosts_b)}"))
    keys = sorted({k for e in a + b for k in e.environment})
    for key in keys:
        old = sorted({e.environment.get(key, "-") for e in a})
        new = sorted({e.environment.get(key, "-") for e in b})
        if old != new:
            found.append(Finding("environment", f"{key} {', '.join(old)} -> {', '.join(new)}"))
    return found


def _query(model: str, name: str, channel: str, arm: Arm, since: float, until: float) -> Query:
    return Query(model, name, channel, arm.label, arm.version, since, until)


def _moved(a: Summary, b: Summary, change: float | None) -> bool:
    """A metric moved: its mean changed by 5% or more (or at all, from zero)."""
    if not a.count or not b.count or a.mean is None or b.mean is None:
        return False
    return abs(change) >= MOVED if change is not None else a.mean != b.mean


def _change(old: float | None, new: float | None) -> float | None:
    if old is None or new is None or old == 0:
        return None
    return (new - old) / abs(old)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
