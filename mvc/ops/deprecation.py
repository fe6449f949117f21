"""Whether a version is deprecated, for everything that uses one (checkout, load, pull,
export, resolve, Router): ``deprecation_of`` (its newest deprecation annotation, else a rule of
the policy file, else a ``deprecated/*`` tag), ``check_use`` (refuse past the cutoff),
``warn_use`` (a Python warning, once per process). Apart from ``ops.lifecycle`` (gates, facts,
the webhook), so a checkout loads none of the metric and gate code.
"""

from __future__ import annotations

from mvc.annotations import deprecation_of as annotated_deprecation
from mvc.deployment.names import ModelTags, best_tag
from mvc.errors import Deprecated, NotFound, UsageError, VersionDeprecationWarning
from mvc.ids import ObjectId, short
from mvc.ops.annotate import chain as annotation_chain
from mvc.ops.channels import load_model_tags
from mvc.policy.deprecations import DEPRECATIONS, Deprecation, DeprecationPolicy
from mvc.policy.file import Policy, read_policy
from mvc.repo import Repo
from mvc.specs import parse_spec, resolve
from mvc.versioning import looks_like_range, parse_range, parse_semver

_WARNED: set[tuple[str, str]] = set()  # (version id, cutoff) warned about in this process


def _label(model: str, version: ObjectId, tags: ModelTags) -> str:
    names = tags.names.get(version)
    return f"{model}@{best_tag(names) if names else short(version)}"


def deprecation_of(
    repo: Repo,
    model: str,
    version: ObjectId,
    *,
    tags: ModelTags | None = None,
    policy: Policy | None = None,
) -> Deprecation | None:
    """The deprecation in force for a version: its newest annotation about deprecation, else a
    rule of the policy file that names it, else a ``deprecated/*`` tag (older stores)."""
    tags = tags if tags is not None else load_model_tags(repo, model)
    label = _label(model, version, tags)
    notes = annotation_chain(repo, model, version)
    for item in notes:
        if item.deprecation is not None:
            found = annotated_deprecation(notes)
            if found is None:
                return None  # lifted: the policy file and tags are not consulted
            return Deprecation(
                model, version, label, found.on, found.reason, found.replacement, "annotation"
            )
    rules = policy_deprecations(repo, policy)
    for rule in rules.rules:
        if version in matching_versions(repo, rule.spec, model, tags):
            return Deprecation(
                model, version, label, rule.on, rule.reason, rule.replacement, "policy"
            )
    reason = tags.deprecated.get(version)
    if reason is not None:
        return Deprecation(model, version, label, None, reason, None, "tag")
    return None


def policy_deprecations(repo: Repo, policy: Policy | None) -> DeprecationPolicy:
    policy = policy if policy is not None else read_policy(repo.root)
    return policy.get(DEPRECATIONS) or DeprecationPolicy()


def matching_versions(
    repo: Repo, spec_text: str, model: str | None, tags: ModelTags
) -> set[ObjectId]:
    """The versions of ``model`` a deprecation spec names: every tagged version a range
    matches (pre-releases included), or the one version an exact spec names."""
    spec = parse_spec(spec_text)
    if model is not None and spec.model != model:
        return set()
    rev = spec.rev or ""
    if looks_like_range(rev) and not spec.back:
        rng = parse_range(rev)
        return {
            version
            for version, names in tags.names.items()
            for name in names
            if (parsed := parse_semver(name)) is not None
            and rng.matches(parsed, include_prerelease=True)
        }
    try:
        return {resolve(repo, spec).version}
    except (NotFound, UsageError):
        return set()


def check_use(
    repo: Repo, model: str, version: ObjectId, *, allow_deprecated: bool = False
) -> Deprecation | None:
    """The deprecation to warn about when a version is used, or None. Past its cutoff:
    ``Deprecated`` (exit 23) unless ``allow_deprecated``."""
    found = deprecation_of(repo, model, version)
    if found is not None and found.passed(repo.clock()) and not allow_deprecated:
        raise Deprecated(
            f"{found.message} (cutoff passed)",
            hint=(f"use {found.replacement}, or " if found.replacement else "")
            + "pass --allow-deprecated to use it anyway",
        )
    return found


def warn_use(
    repo: Repo,
    model: str,
    version: ObjectId,
    *,
    allow_deprecated: bool = False,
    stacklevel: int = 3,
) -> Deprecation | None:
    """``check_use`` for library callers: a ``VersionDeprecationWarning`` once per process
    per version (the Python way to tell a caller; the library never prints)."""
    import warnings

    found = check_use(repo, model, version, allow_deprecated=allow_deprecated)
    if found is not None and (version, str(found.on)) not in _WARNED:
        _WARNED.add((version, str(found.on)))
        warnings.warn(found.message, VersionDeprecationWarning, stacklevel=stacklevel)
    return found
