"""The ``archive:`` and ``retention:`` sections of ``mvc.yaml``, and their pure rules.

::

    archive:
      remote: cold                     # a remote from `mvc remote add`
      rules:                           # for every model; a version matching ANY rule is archived
        - unused_for: 90d              # no checkout, load, pull, export or Router pick (nor
                                       # commit) for 90 days
        - keep_last_minors: 3          # outside the 3 newest minors of its major
          older_than: 30d              # (keys of one rule must ALL hold)
      models:
        bert:                          # replaces the rules (and optionally the remote) for bert
          rules: [{unused_for: 30d}]

    retention:
      rules:                           # gc collects a version no ref reaches only when a rule
        - unused_for: 30d              # selects it; without the section, as before

Rules are pure functions of ``ArchiveFacts`` (age, last use, tags, channels, branch heads) and
the time: ``plan_archive`` returns every decision with the rule and the facts behind it. A
version a channel serves (now, or in the record its rollback would restore), a release tag
names, a branch has as its head, or a working folder has checked out is never archived,
whatever the rules say: the decision says which protection kept it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mvc.ids import ObjectId
from mvc.instants import parse_instant
from mvc.jsonshape import JsonShaped
from mvc.policy.text import PolicyText, Section

_RULE_KEYS = ("unused_for", "older_than", "keep_last_minors")


@dataclass(frozen=True)
class Rule:
    """One item of a ``rules`` list; every condition it sets must hold."""

    path: str  # e.g. "archive.rules[0]", for plans and the audit log
    unused_for: float | None = None  # seconds
    older_than: float | None = None
    keep_last_minors: int | None = None
    text: str = ""  # as written, e.g. "unused_for: 90d"

    def __str__(self) -> str:
        return f"{self.path} ({self.text})"


@dataclass(frozen=True)
class ModelRules:
    remote: str | None
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class ArchivePolicy:
    remote: str | None = None
    rules: tuple[Rule, ...] = ()
    models: Mapping[str, ModelRules] = field(default_factory=dict)

    def for_model(self, model: str) -> ModelRules:
        own = self.models.get(model)
        if own is None:
            return ModelRules(self.remote, self.rules)
        return ModelRules(own.remote or self.remote, own.rules)


@dataclass(frozen=True)
class RetentionPolicy:
    rules: tuple[Rule, ...] = ()


# --- parsing -------------------------------------------------------------------------------------


def _rules(path: str, value: object, ctx: PolicyText) -> tuple[Rule, ...]:
    if not isinstance(value, list):
        ctx.fail(path, "expected a list of rules, e.g. [{unused_for: 90d}]")
    rules = []
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        body = ctx.mapping(where, item)
        ctx.only_keys(where, body, _RULE_KEYS)
        if not body:
            ctx.fail(where, f"a rule needs at least one of {', '.join(_RULE_KEYS)}")
        text = ", ".join(f"{k}: {body[k]}" for k in _RULE_KEYS if k in body)
        rules.append(
            Rule(
                where,
                ctx.duration(f"{where}.unused_for", body["unused_for"])
                if "unused_for" in body
                else None,
                ctx.duration(f"{where}.older_than", body["older_than"])
                if "older_than" in body
                else None,
                ctx.integer(f"{where}.keep_last_minors", body["keep_last_minors"], minimum=1)
                if "keep_last_minors" in body
                else None,
                text,
            )
        )
    return tuple(rules)


def parse_archive(value: object, ctx: PolicyText) -> ArchivePolicy:
    body = ctx.mapping("archive", value)
    ctx.only_keys("archive", body, ("remote", "rules", "models"))
    remote = ctx.string("archive.remote", body["remote"]) if "remote" in body else None
    rules = _rules("archive.rules", body["rules"], ctx) if "rules" in body else ()
    models: dict[str, ModelRules] = {}
    for name, item in ctx.mapping("archive.models", body.get("models") or {}).items():
        where = f"archive.models.{name}"
        own = ctx.mapping(where, item)
        ctx.only_keys(where, own, ("remote", "rules"))
        if "rules" not in own:
            ctx.fail(where, "a model's entry needs its own rules")
        models[str(name)] = ModelRules(
            ctx.string(f"{where}.remote", own["remote"]) if "remote" in own else None,
            _rules(f"{where}.rules", own["rules"], ctx),
        )
    if remote is None and (rules or any(m.remote is None for m in models.values())):
        ctx.fail("archive", "name the cold remote the chunks go to: remote: NAME")
    return ArchivePolicy(remote, rules, models)


def parse_retention(value: object, ctx: PolicyText) -> RetentionPolicy:
    body = ctx.mapping("retention", value)
    ctx.only_keys("retention", body, ("rules",))
    return RetentionPolicy(_rules("retention.rules", body.get("rules") or [], ctx))


ARCHIVE = Section("archive", parse_archive, "which versions move their chunks to a cold remote")
RETENTION = Section("retention", parse_retention, "which unreachable versions gc may collect")


# --- the facts and the rules ------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveFacts(JsonShaped):
    """What a rule sees of one version."""

    model: str
    version: ObjectId
    created: str  # ISO-8601 UTC: the commit's time
    last_used: str | None = None  # ISO-8601 UTC, from the last-use table
    tags: tuple[str, ...] = ()
    release: bool = False  # a release tag (semver without pre-release) names it
    minor: tuple[int, int] | None = None  # (major, minor) of its own or nearest earlier semver tag
    channels: tuple[str, ...] = ()  # channels whose current record (or its predecessor) serves it
    heads: tuple[str, ...] = ()  # branches whose head it is
    checked_out: bool = False  # a working folder's HEAD
    archived: bool = False


@dataclass(frozen=True)
class Decision(JsonShaped):
    model: str
    version: ObjectId
    action: str  # "archive", "keep" (a rule matched, a protection won), "collect"
    rule: str | None  # the rule that matched, e.g. "archive.rules[0] (unused_for: 90d)"
    why: str  # the facts, in words
    facts: ArchiveFacts


def _instant(text: str) -> float:
    return parse_instant(text).timestamp()


def _days(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.0f}d"
    return f"{seconds / 3600:.1f}h" if seconds >= 3600 else f"{seconds:.0f}s"


def protection(facts: ArchiveFacts) -> str | None:
    """Why this version may never be archived (None: nothing protects it)."""
    if facts.channels:
        return f"served by channel {', '.join(facts.channels)}"
    if facts.release:
        return f"release tag {', '.join(t for t in facts.tags)}"
    if facts.heads:
        return f"head of branch {', '.join(facts.heads)}"
    if facts.checked_out:
        return "checked out in a working folder"
    return None


def newest_minors(facts: Iterable[ArchiveFacts], keep: int) -> set[tuple[str, int, int]]:
    """(model, major, minor) of the ``keep`` newest minors of each major of each model."""
    by_major: dict[tuple[str, int], set[int]] = {}
    for f in facts:
        if f.minor is not None:
            by_major.setdefault((f.model, f.minor[0]), set()).add(f.minor[1])
    kept: set[tuple[str, int, int]] = set()
    for (model, major), minors in by_major.items():
        kept.update((model, major, m) for m in sorted(minors)[-keep:])
    return kept


def matches(
    rule: Rule, facts: ArchiveFacts, now: float, all_facts: list[ArchiveFacts]
) -> str | None:
    """The facts that make ``rule`` select this version, in words; None when it does not."""
    reasons: list[str] = []
    if rule.unused_for is not None:
        seen = max(_instant(facts.created), _instant(facts.last_used) if facts.last_used else 0)
        idle = now - seen
        if idle < rule.unused_for:
            return None
        used = f"last used {facts.last_used}" if facts.last_used else "never used"
        reasons.append(f"{used}, committed {facts.created}: idle {_days(idle)}")
    if rule.older_than is not None:
        age = now - _instant(facts.created)
        if age < rule.older_than:
            return None
        reasons.append(f"committed {facts.created}: {_days(age)} old")
    if rule.keep_last_minors is not None:
        if facts.minor is None:
            return None
        kept = newest_minors(all_facts, rule.keep_last_minors)
        if (facts.model, *facts.minor) in kept:
            return None
        newest = sorted(m for (mo, ma, m) in kept if mo == facts.model and ma == facts.minor[0])
        reasons.append(
            f"minor {facts.minor[0]}.{facts.minor[1]} is older than the {rule.keep_last_minors} "
            f"newest of major {facts.minor[0]} ({', '.join(f'{facts.minor[0]}.{m}' for m in newest)})"
        )
    return "; ".join(reasons)


def first_match(
    rules: tuple[Rule, ...], facts: ArchiveFacts, now: float, all_facts: list[ArchiveFacts]
) -> tuple[Rule, str] | None:
    for rule in rules:
        why = matches(rule, facts, now, all_facts)
        if why is not None:
            return rule, why
    return None


def plan_archive(policy: ArchivePolicy, facts: list[ArchiveFacts], now: float) -> list[Decision]:
    """Every version some rule selects: ``archive`` it, or ``keep`` it and say what protects it.
    Versions already archived are left out (nothing to do)."""
    decisions = []
    by_model: dict[str, list[ArchiveFacts]] = {}
    for f in facts:
        by_model.setdefault(f.model, []).append(f)
    for model, own in sorted(by_model.items()):
        rules = policy.for_model(model).rules
        for f in sorted(own, key=lambda x: (x.created, x.version)):
            if f.archived:
                continue
            found = first_match(rules, f, now, own)
            if found is None:
                continue
            rule, why = found
            guard = protection(f)
            if guard is not None:
                decisions.append(
                    Decision(model, f.version, "keep", str(rule), f"{why}; but {guard}", f)
                )
            else:
                decisions.append(Decision(model, f.version, "archive", str(rule), why, f))
    return decisions


def collectable(
    policy: RetentionPolicy, facts: ArchiveFacts, now: float
) -> tuple[Rule, str] | None:
    """Whether gc may collect an unreachable version: the rule that allows it and why."""
    return first_match(policy.rules, facts, now, [facts])
