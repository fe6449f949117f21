"""Lifecycle use cases: the facts rules see, promotion gates on channel moves, deprecations.

- ``version_facts`` gathers ``VersionFacts`` for one version from the store (commit metrics,
  annotations, tags, channels) for the pure rules in ``mvc.policy``.
- ``check_move`` is called by every channel move (``mvc.ops.deploy._move``, so ``channel
  set``, ``deploy``, ``promote``, ``switch`` and anything built on them, ``guard --advance``
  included): it refuses a move that breaks a gate (``GateRefused``) unless forced with a
  reason, which the new record keeps; and it refuses a version past its deprecation cutoff
  (``Deprecated``), always.
- ``deprecation_of`` / ``check_use`` (in ``ops.deprecation``, re-exported here): whether a
  version is deprecated, warning before the cutoff and refusing after it (consumers: checkout,
  load, pull, export, resolve, Router).
- ``deprecate`` records deprecations as annotations; ``list_deprecations`` lists every one in
  force; ``notify`` posts each to the policy's webhook once (the store remembers).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mvc.annotations import DeprecationNote, merged_metrics
from mvc.canonical import encode_canonical
from mvc.deployment.names import ModelTags
from mvc.deployment.records import AB, STABLE, Record
from mvc.errors import (
    Deprecated,
    GateRefused,
    MvcError,
    NotFound,
    UsageError,
)
from mvc.ids import ObjectId, hash_bytes
from mvc.instants import parse_instant
from mvc.jsonshape import JsonShaped, Shape
from mvc.metrics.model import MetricSource, Query, Summary
from mvc.ops.annotate import append
from mvc.ops.annotate import chain as annotation_chain
from mvc.ops.channels import chain, list_channels, load_model_tags
from mvc.ops.deprecation import check_use as check_use
from mvc.ops.deprecation import deprecation_of as deprecation_of
from mvc.ops.deprecation import matching_versions, policy_deprecations
from mvc.ops.deprecation import warn_use as warn_use
from mvc.ops.metrics import metric_source
from mvc.policy.deprecations import Deprecation, webhook_body
from mvc.policy.facts import VersionFacts
from mvc.policy.file import Policy, read_policy
from mvc.policy.gates import GATES, Broken, Gate, evaluate, evaluate_production
from mvc.repo import Repo
from mvc.specs import Resolved, parse_spec, resolve

NOTIFIED = "notified"  # store folder: one file per deprecation the webhook was told about


# --- facts ----------------------------------------------------------------------------------------


def version_facts(
    repo: Repo,
    model: str,
    version: ObjectId,
    *,
    tags: ModelTags | None = None,
    policy: Policy | None = None,
) -> VersionFacts:
    tags = tags if tags is not None else load_model_tags(repo, model)
    stored = repo.objects.get_version(version)
    now = repo.clock()
    channels, served = [], []
    for summary in list_channels(repo, model):
        if version in summary.record.refs():
            channels.append(summary.channel)
        if any(version in record.refs() for record in chain(repo, summary.record)):
            served.append(summary.channel)
    return VersionFacts(
        model,
        version,
        stored.time,
        max(0.0, (now - parse_instant(stored.time)).total_seconds()),
        {k: float(v) for k, v in stored.metrics.items() if _number(v)},
        merged_metrics(annotation_chain(repo, model, version)),
        {},
        tuple(tags.names.get(version, ())),
        tuple(channels),
        tuple(served),
        deprecation_of(repo, model, version, tags=tags, policy=policy),
    )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- deprecations ---------------------------------------------------------------------------------


@dataclass
class DeprecateResult(JsonShaped):
    deprecations: list[Deprecation] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)  # webhook deliveries made now
    lifted: bool = False


def deprecate(
    repo: Repo,
    spec: str,
    *,
    on: str | None,
    reason: str,
    replacement: str | None = None,
    lift: bool = False,
    post: Callable[[str, dict[str, Any]], None] | None = None,
) -> DeprecateResult:
    """Deprecate the version ``spec`` names, or every tagged version its range matches
    (``bert@<1.2``), from the day ``on``; ``lift`` ends a deprecation."""
    if not lift and not reason.strip():
        raise UsageError("say why with -m REASON", hint='e.g. -m "use 2.x"')
    parsed = parse_spec(spec)
    tags = load_model_tags(repo, parsed.model)
    versions = matching_versions(repo, spec, parsed.model, tags)
    if not versions:
        resolve(repo, parsed)  # says what is wrong with the spec
        raise NotFound(f"no tagged version of {parsed.model!r} matches {spec!r}")
    replacement_id = resolve(repo, replacement).version if replacement else None
    note = DeprecationNote(on, reason.strip(), replacement, replacement_id, lift)
    result = DeprecateResult(lifted=lift)
    for version in sorted(versions):
        append(repo, Resolved(parsed.model, version, "id"), {}, "", note)
        found = deprecation_of(repo, parsed.model, version, tags=tags)
        if found is not None:
            result.deprecations.append(found)
    if not lift:
        result.notified = notify(repo, result.deprecations, post=post)
    return result


def list_deprecations(repo: Repo, *, policy: Policy | None = None) -> list[Deprecation]:
    """Every deprecation in force in this store, by model and version."""
    policy = policy if policy is not None else read_policy(repo.root)
    found: list[Deprecation] = []
    for model in repo.refs.models():
        tags = load_model_tags(repo, model)
        candidates: set[ObjectId] = set(tags.names) | set(tags.deprecated)
        candidates |= {ObjectId(r.name) for r in repo.refs.list_refs("notes", model)}
        for version in sorted(candidates):
            try:
                item = deprecation_of(repo, model, version, tags=tags, policy=policy)
            except NotFound:
                continue
            if item is not None:
                found.append(item)
    return found


@dataclass
class DeprecationStatus(JsonShaped):
    deprecation: Deprecation
    state: str  # announced (before its cutoff), past-cutoff, or no-cutoff
    days_left: int | None  # whole days until the cutoff (0 or less: passed)

    json_shape: ClassVar[Shape] = Shape(flatten=("deprecation",))


@dataclass
class DeprecationsReport(JsonShaped):
    deprecations: list[DeprecationStatus] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)  # the webhook was told about these now


def deprecations_report(
    repo: Repo, *, post: Callable[[str, dict[str, Any]], None] | None = None
) -> DeprecationsReport:
    """Every deprecation in force, with where it stands today; the policy's webhook is told
    about the ones it has not heard of (once each, remembered by the store)."""
    policy = read_policy(repo.root)
    items = list_deprecations(repo, policy=policy)
    now = repo.clock()
    report = DeprecationsReport()
    for item in items:
        cutoff = item.cutoff()
        if cutoff is None:
            state, days = "no-cutoff", None
        else:
            days = (cutoff.date() - now.date()).days
            state = "past-cutoff" if item.passed(now) else "announced"
        report.deprecations.append(DeprecationStatus(item, state, days))
    report.notified = notify(repo, items, policy=policy, post=post)
    return report


def _notified_key(item: Deprecation) -> str:
    digest = hash_bytes(encode_canonical([item.model, item.version, item.on, item.reason]))
    return f"{NOTIFIED}/{digest}"


def notify(
    repo: Repo,
    items: Iterable[Deprecation],
    *,
    policy: Policy | None = None,
    post: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[str]:
    """POST each deprecation the policy's webhook was not yet told about; the store records
    each delivery, so a re-run never repeats one. Returns the versions told now."""
    webhook = policy_deprecations(repo, policy).webhook
    if webhook is None:
        return []
    send = post or post_json
    told = []
    for item in items:
        key = _notified_key(item)
        body = webhook_body(item)
        record = encode_canonical({"url": webhook, "when": repo.now(), "body": body})
        if not repo.storage.create_exclusive(key, record):
            continue  # told before (or being told by another process right now)
        try:
            send(webhook, body)
        except MvcError:
            repo.storage.delete(key)  # not told: the next run tries again
            raise
        told.append(item.name)
    return told


def post_json(url: str, body: dict[str, Any]) -> None:
    """POST ``body`` as JSON; an error names the webhook (never its query string)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url,
        data=json.dumps(body, sort_keys=True).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "mvc"},
        method="POST",
    )
    shown = url.split("?", 1)[0]
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http(s) only
            response.read()
    except urllib.error.HTTPError as exc:
        raise MvcError(
            f"deprecation webhook {shown} answered {exc.code}",
            hint="it is called again on the next run",
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise MvcError(
            f"deprecation webhook {shown} is unreachable: {exc}",
            hint="it is called again on the next run",
        ) from exc


# --- gates on channel moves -----------------------------------------------------------------------


@dataclass(frozen=True)
class Checked:
    """What ``check_move`` found: broken gate rules (empty: passed) and warnings for people."""

    broken: tuple[Broken, ...] = ()
    warnings: tuple[str, ...] = ()


def check_move(
    repo: Repo,
    old: Record | None,
    new: Record,
    *,
    force: bool = False,
    reason: str = "",
    source: Callable[[], MetricSource] | None = None,
) -> Checked:
    """Gate and deprecation checks for a planned move (raises; returns what to record).
    ``source`` opens the metric source production rules read (only when a gate has them;
    default: the store's metric database)."""
    policy = read_policy(repo.root)
    tags = load_model_tags(repo, new.model)
    warnings: list[str] = []
    old_targets = {a.target for a in old.arms} if old else set()
    for arm in new.arms:
        if arm.target in old_targets:
            continue
        item = deprecation_of(repo, new.model, arm.version, tags=tags, policy=policy)
        if item is None or item.source == "tag":
            continue  # a deprecated/* tag is refused by the planner, as it always was
        if item.passed(repo.clock()):  # the clock is read only when it matters
            raise Deprecated(
                f"{item.message}; its cutoff has passed, so it cannot be deployed",
                hint=f"deploy {item.replacement}" if item.replacement else "deploy another version",
            )
        warnings.append(item.message)
    gates = policy.get(GATES)
    gate = gates.for_channel(new.model, new.channel) if gates else None
    if gate is None or new.action == "rollback":  # the way back is never gated
        return Checked((), tuple(warnings))
    old_primary = {a.target for a in old.arms if a.role in (STABLE, AB)} if old else set()
    stable_now = old.stable if old else None
    stable_facts = (
        version_facts(repo, new.model, stable_now.version, tags=tags, policy=policy)
        if stable_now
        else None
    )
    broken: list[Broken] = []
    for arm in new.arms:
        if arm.role not in (STABLE, AB) or arm.target in old_primary or arm.weight == 0:
            continue  # gates guard what serves users as the primary; canaries gather evidence
        facts = version_facts(repo, new.model, arm.version, tags=tags, policy=policy)
        broken += evaluate(
            gate,
            facts,
            full_stable=arm.role == STABLE and arm.weight == 100,
            stable=stable_facts,
        )
        if gate.production:
            opened = source() if source is not None else metric_source(repo)
            since = repo.clock().timestamp() - gate.window
            broken += evaluate_production(
                gate,
                facts,
                _measured(opened, gate, new.model, arm.version, since),
                stable=_measured(opened, gate, new.model, stable_now.version, since)
                if stable_now
                else None,
            )
    if broken and not force:
        lines = "; ".join(f"{b.rule}: {b.detail}" for b in broken)
        hints = [b.hint for b in broken if b.hint]
        raise GateRefused(
            f"gate {gate.key} ({gate.where}) refuses this move of channel {new.channel!r} of "
            f"{new.model!r}: {lines}",
            hint="; ".join(
                [*hints, '--force -m "WHY" overrides it (the reason is recorded in the record)']
            ),
        )
    if broken and not reason.strip():
        raise UsageError(
            "--force overrides a gate only with a reason: -m WHY",
            hint='e.g. --force -m "hotfix for incident 42, accuracy measured offline"',
        )
    return Checked(tuple(broken), tuple(warnings))


def _measured(
    source: MetricSource, gate: Gate, model: str, version: ObjectId, since: float
) -> dict[str, Summary]:
    """The summaries production rules read: each metric of one version, wherever it served
    (any channel, any arm), over the gate's window."""
    return {
        rule.metric: source.summary(Query(model, rule.metric, version=version, since=since))
        for rule in gate.production
    }


def override_value(checked: Checked, who: str, when: str, why: str) -> dict[str, Any] | None:
    """What a forced move's record keeps about the gate it overrode."""
    if not checked.broken:
        return None
    return {
        "who": who,
        "when": when,
        "why": why,
        "broken": [f"{b.rule}: {b.detail}" for b in checked.broken],
    }
