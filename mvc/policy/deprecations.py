"""Deprecations with dates: the values, what they mean at an instant, and the policy section.

A deprecation says a version should no longer be used: from the cutoff day ``on`` (an ISO
date, UTC; the cutoff is the start of that day), resolving it for use fails (``Deprecated``,
exit 23) unless the caller allows it, and deploying it always fails. Before the cutoff every
consumer is warned. A deprecation without a date (the ``deprecated/*`` tag convention of
older stores) warns forever and refuses deploys, as those tags always did.

Where deprecations come from, the newest first wins per version:

- ``mvc deprecate SPEC --on DATE -m WHY [--replacement SPEC]``: an annotation on each version
  the spec (or range) names; it travels with the version to remotes;
- the ``deprecations:`` section of ``mvc.yaml``: ranges evaluated whenever a version is used,
  so a release tagged later that falls in ``bert@<1.2`` is deprecated too;
- a tag ``deprecated/…`` naming the version (older stores).

The section::

    deprecations:
      webhook: https://hooks.example.com/mvc   # optional: POSTed once per deprecation
      versions:
        - spec: "bert@<1.2"
          cutoff: 2027-01-31   # not `on:`: YAML reads that key as true
          reason: use 2.x
          replacement: "bert@^2"
Pure: no I/O here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from mvc.errors import UsageError
from mvc.ids import ObjectId
from mvc.jsonshape import JsonShaped
from mvc.policy.text import PolicyText, Section
from mvc.refnames import validate_model
from mvc.versioning import parse_range

SOURCES = ("annotation", "policy", "tag")


@dataclass(frozen=True)
class Deprecation(JsonShaped):
    model: str
    version: ObjectId
    name: str  # the version as people know it: bert@v1.1.0
    on: str | None  # ISO date of the cutoff; None: no cutoff (warn, refuse deploys)
    reason: str
    replacement: str | None = None
    source: str = "annotation"  # annotation, policy or tag

    def cutoff(self) -> dt.datetime | None:
        if self.on is None:
            return None
        day = dt.date.fromisoformat(self.on)
        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)

    def passed(self, now: dt.datetime) -> bool:
        """Whether the cutoff has come (a deprecation without a date never passes)."""
        cutoff = self.cutoff()
        return cutoff is not None and now >= cutoff

    @property
    def message(self) -> str:
        when = f"on {self.on}" if self.on else "with no cutoff date"
        text = f"{self.name} is deprecated {when}: {self.reason or 'no reason given'}"
        return text + (f"; use {self.replacement} instead" if self.replacement else "")


@dataclass(frozen=True)
class DeprecationRule:
    """One item of the ``deprecations.versions`` list (``cutoff`` is ``on`` here)."""

    spec: str  # MODEL@RANGE, MODEL@TAG, or MODEL@ID
    on: str | None
    reason: str
    replacement: str | None = None
    where: str = ""  # mvc.yaml:LINE, for messages


@dataclass(frozen=True)
class DeprecationPolicy:
    rules: tuple[DeprecationRule, ...] = ()
    webhook: str | None = None


def parse_date(text: object, what: str = "--on") -> str:
    """An ISO date (``2027-01-31``), as text."""
    if isinstance(text, dt.datetime):
        return text.date().isoformat()
    if isinstance(text, dt.date):
        return text.isoformat()
    try:
        return dt.date.fromisoformat(str(text).strip()).isoformat()
    except ValueError as exc:
        raise UsageError(
            f"{what} {text!r} is not a date; write YYYY-MM-DD, e.g. 2027-01-31"
        ) from exc


def parse_deprecations(value: object, ctx: PolicyText) -> DeprecationPolicy:
    root = ctx.mapping("deprecations", value)
    ctx.only_keys("deprecations", root, ("webhook", "versions"))
    webhook = None
    if "webhook" in root:
        webhook = ctx.string("deprecations.webhook", root["webhook"])
        if not webhook.startswith(("http://", "https://")):
            ctx.fail("deprecations.webhook", f"{webhook!r} is not an http(s) URL")
    items = root.get("versions", [])
    if not isinstance(items, list):
        ctx.fail("deprecations.versions", "expected a list of {spec, cutoff, reason, replacement}")
    rules = []
    for index, item in enumerate(items):
        path = f"deprecations.versions.{index}"
        entry = ctx.mapping(path, item)
        if any(isinstance(key, bool) for key in list[object](entry)):  # YAML 1.1: `on:` is true
            ctx.fail(f"{path}", "YAML reads the key `on:` as true; write the date as `cutoff:`")
        ctx.only_keys(path, entry, ("spec", "cutoff", "reason", "replacement"))
        spec = ctx.string(f"{path}.spec", entry.get("spec"))
        model, _, rev = spec.partition("@")
        if not rev:
            ctx.fail(
                f"{path}.spec", f"{spec!r} names no versions; write MODEL@RANGE, e.g. bert@<1.2"
            )
        try:
            validate_model(model)
            if rev.startswith(("^", "~", "<", ">", "=")):
                parse_range(rev)
        except UsageError as exc:
            ctx.fail(f"{path}.spec", exc.message)
        on = None
        if entry.get("cutoff") is not None:
            try:
                on = parse_date(entry["cutoff"], "cutoff")
            except UsageError as exc:
                ctx.fail(f"{path}.cutoff", exc.message)
        reason = ctx.string(f"{path}.reason", entry.get("reason"))
        replacement = entry.get("replacement")
        if replacement is not None:
            replacement = ctx.string(f"{path}.replacement", replacement)
        rules.append(DeprecationRule(spec, on, reason, replacement, ctx.where(path)))
    return DeprecationPolicy(tuple(rules), webhook)


DEPRECATIONS: Section[DeprecationPolicy] = Section(
    "deprecations",
    parse_deprecations,
    "versions that should no longer be used, from a cutoff date (and a webhook told once)",
)


def webhook_body(item: Deprecation) -> dict[str, Any]:
    """What the webhook is POSTed for one deprecation."""
    return {"event": "deprecation", **item.to_json(), "message": item.message}
