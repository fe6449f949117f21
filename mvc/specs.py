"""Version specs: ``MODEL[@REV][~N]``, parsed once and resolved to a version id.

REV is one of: a branch, a tag (``v1.2.0`` and ``1.2.0`` are the same tag), a semver range
(starts with ``^ ~ < > =``), a channel (its stable arm; ``prod:canary`` names another arm),
``latest`` (the newest version on any branch), an ISO-8601 instant (the newest version at or
before it on the default branch), or a version-id prefix (4+ hex digits). When a REV matches
more than one kind of name, resolution refuses and lists the candidates; ``branch=``, ``tag=``,
``channel=`` and ``id=`` say which one is meant. The grammar is published in docs/versioning.md.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from mvc.deployment.records import AdapterRef, Arm, decode_record, serving_arm
from mvc.errors import AmbiguousSpec, InvalidInput, InvalidName, MvcError, NotFound, UsageError
from mvc.graph import first_parent, first_parents
from mvc.ids import ObjectId, parse_id_prefix, short
from mvc.instants import parse_instant
from mvc.refnames import HEADS, TAGS, RefName, branch, channel, tag, validate_model
from mvc.refs import RefStore
from mvc.remotes import remote_names, tracking_refs
from mvc.repo import Repo
from mvc.versioning import (
    RANGE_START,
    highest_match,
    looks_like_range,
    parse_range,
    parse_semver,
)

if TYPE_CHECKING:
    import semver

QUALIFIERS = ("branch", "tag", "channel", "id")
_BACK = re.compile(r"^(?P<rev>.*?)~(?P<n>\d+)$")
_RANGE_BACK = re.compile(r"^(?P<rev>.*[0-9A-Za-z*])~(?P<n>\d+)$")
_INSTANT = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)
_HEX = re.compile(r"^[0-9a-fA-F]{4,64}$")


@dataclass(frozen=True)
class Spec:
    model: str
    rev: str | None = None  # None: the model's HEAD (bound branch, or main)
    back: int = 0  # the ~N suffix

    def __str__(self) -> str:
        text = self.model + (f"@{self.rev}" if self.rev is not None else "")
        return text + (f"~{self.back}" if self.back else "")


@dataclass(frozen=True)
class Resolved:
    model: str
    version: ObjectId
    kind: str  # branch, tag, channel, range, latest, instant, id, head
    name: str | None = None  # the branch/tag/channel name, when the spec named one
    # kind "channel": the adapter the named arm serves on top of ``version``, read from the same
    # record as ``version`` (a second read of the channel could see a later record)
    adapter: AdapterRef | None = None

    @property
    def branch(self) -> str | None:
        return self.name if self.kind == "branch" else None

    def __str__(self) -> str:
        """A spec naming this version, for messages and hints."""
        return f"{self.model}@{short(self.version)}"


# What a use case accepts for "a version": spec text typed by a user (parsed at the edge, here),
# a parsed Spec, or a version already resolved, which use cases pass each other and which is
# never formatted back into text and resolved again.
SpecLike = Spec | Resolved | str


def by_id(model: str, version: ObjectId) -> Resolved:
    """A version of ``model`` known by its id (read from a ref, a record or a pull)."""
    return Resolved(model, version, "id")


def looks_like_path(text: str) -> bool:
    """Text meant as a file or folder, never a model name: ``./x ../x /x ~/x . ..`` or ``x/``."""
    return text in (".", "..", "~") or text.startswith(("./", "../", "/", "~/")) or text[-1] == "/"


def path_not_spec(text: str, repo: Repo | None = None) -> MvcError:
    """The error for a path given where a version spec is expected: the file or folder is not
    there (exit 1, as for every missing file), or it is, but a path names no version (2)."""
    where = os.path.expanduser(text)
    if not os.path.lexists(where):
        return NotFound(
            f"no such file or folder: {text}",
            hint="check the path; a version is named MODEL[@REV] (docs/versioning.md)",
        )
    bound = repo.binding_for_path(where) if repo is not None and os.path.isdir(where) else None
    if bound is not None:
        return UsageError(
            f"{text} is the working folder of model {bound.model!r}, not a version spec",
            hint=f"name the model: {bound.model} (its HEAD) or {bound.model}@REV",
        )
    kind = "folder" if os.path.isdir(where) else "file"
    return UsageError(
        f"{text} is a {kind}, not a version spec",
        hint="name a version: MODEL[@REV], e.g. bert@v1.2.0 (`mvc models` lists the models)",
    )


def parse_spec(text: str) -> Spec:
    if not text or not isinstance(text, str):
        raise UsageError("empty version spec", hint="write MODEL or MODEL@REV, e.g. bert@v1.2.0")
    if looks_like_path(text):
        raise path_not_spec(text)
    model, sep, rev = text.partition("@")
    back = 0
    # ~N ends the spec. In a range, ~ also starts a tilde comparator: there, ~N is a back
    # step only when glued to the range's last version (``^1.2~1``, not ``>=1 ~2``).
    pattern = _RANGE_BACK if sep and rev.startswith(RANGE_START) else _BACK
    match = pattern.match(rev if sep else model)
    if match and match.group("rev"):
        back = int(match.group("n"))
        if sep:
            rev = match.group("rev")
        else:
            model = match.group("rev")
    try:
        validate_model(model)
    except (InvalidInput, UsageError) as exc:
        raise UsageError(
            f"bad version spec {text!r}: {exc.message}",
            hint="write MODEL or MODEL@REV, e.g. bert@main~1",
        ) from exc
    if sep and not rev:
        raise UsageError(f"bad version spec {text!r}: nothing after '@'")
    return Spec(model, rev if sep else None, back)


def head_branch(repo: Repo, model: str) -> str:
    binding = repo.binding(model)
    return binding.branch if binding and binding.branch else "main"


def channel_arm(repo: Repo, model: str, name: str, arm: str) -> ObjectId | None:
    """The version serving ``arm`` of a channel (None if the channel does not exist)."""
    found = _serving(repo, model, name, arm)
    return found.version if found else None


def _serving(repo: Repo, model: str, name: str, arm: str) -> Arm | None:
    """The arm ``arm`` of a channel's current record (None if the channel does not exist)."""
    record_id = repo.refs.get(channel(model, name))
    if record_id is None:
        return None
    return serving_arm(decode_record(repo.objects.get_meta(record_id), record_id), arm)


def tag_candidates(rev: str) -> list[str]:
    """``1.2.0`` and ``v1.2.0`` are the same tag."""
    names = [rev]
    if rev.startswith("v") and rev[1:2].isdigit():
        names.append(rev[1:])
    elif rev[:1].isdigit():
        names.append("v" + rev)
    return names


def _version_ids_with_prefix(repo: Repo, model: str, prefix: str) -> list[ObjectId]:
    found = []
    for oid in repo.objects.ids_with_prefix(prefix):
        try:
            value = repo.objects.get_meta(oid)
        except NotFound:
            continue
        if value.get("type") == "version" and value.get("model") == model:
            found.append(oid)
    return found


def _lookup_ref(
    repo: Repo, ref_factory: Callable[[str], RefName], names: list[str]
) -> tuple[str, ObjectId] | None:
    return _lookup_ref_in(repo.refs, ref_factory, names)


def _lookup_ref_in(
    refs: RefStore, ref_factory: Callable[[str], RefName], names: list[str]
) -> tuple[str, ObjectId] | None:
    for name in names:
        try:
            ref = ref_factory(name)
        except (InvalidInput, InvalidName):
            continue
        value = refs.get(ref)
        if value is not None:
            return name, value
    return None


def _candidates(repo: Repo, model: str, rev: str, only: str | None) -> list[Resolved]:
    found: list[Resolved] = []
    if only is None and "/" in rev:
        remote_hit = _remote_candidate(repo, model, rev)
        if remote_hit:
            found.append(remote_hit)
    if only in (None, "branch"):
        hit = _lookup_ref(repo, lambda n: branch(model, n), [rev])
        if hit:
            found.append(Resolved(model, hit[1], "branch", hit[0]))
    if only in (None, "tag"):
        hit = _lookup_ref(repo, lambda n: tag(model, n), tag_candidates(rev))
        if hit:
            found.append(Resolved(model, hit[1], "tag", hit[0]))
    if only in (None, "channel"):
        name, _, label = rev.partition(":")
        try:
            arm = _serving(repo, model, name, label or "stable")
        except (InvalidInput, InvalidName):
            arm = None
        if arm:
            found.append(Resolved(model, arm.version, "channel", rev, arm.adapter))
    if only in (None, "id") and _HEX.match(rev):
        ids = _version_ids_with_prefix(repo, model, parse_id_prefix(rev))
        if len(ids) > 1:
            raise AmbiguousSpec(
                f"{model}@{rev} matches {len(ids)} versions: " + ", ".join(short(i) for i in ids),
                hint="give more digits of the id",
            )
        if ids:
            found.append(Resolved(model, ids[0], "id", None))
    return found


def _latest(repo: Repo, model: str) -> ObjectId:
    tips = [repo.refs.get(ref) for ref in repo.refs.list_refs("heads", model)]
    versions = [(repo.objects.get_version(t).time, t) for t in tips if t]
    if not versions:
        raise NotFound(f"model {model!r} has no versions", hint="see `mvc models`")
    return max(versions)[1]


def at_instant(repo: Repo, model: str, moment: datetime, branch_name: str) -> ObjectId:
    tip = repo.refs.get(branch(model, branch_name))
    for current in first_parents(repo.objects, tip) if tip else ():
        if parse_instant(repo.objects.get_version(current).time) <= moment:
            return current
    raise NotFound(
        f"{model} has no version at or before {moment.strftime('%Y-%m-%dT%H:%M:%SZ')} "
        f"on branch {branch_name!r}"
    )


def resolve(repo: Repo, spec: SpecLike) -> Resolved:
    """The version a spec names (a Resolved is already resolved: it comes back as it is)."""
    if isinstance(spec, Resolved):
        return spec
    if isinstance(spec, str) and spec and looks_like_path(spec):
        raise path_not_spec(spec, repo)
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    resolved = _resolve_rev(repo, spec)
    if spec.back:
        version = first_parent(repo.objects, resolved.version, spec.back, str(spec))
        return Resolved(spec.model, version, resolved.kind, None)
    return resolved


def resolve_model_rev(repo: Repo, model: str, rev: str | Resolved | None) -> Resolved:
    """A REV given apart from its model (``mvc tag bert v1.2.0 REV``): the model's HEAD when
    ``rev`` is None; a Resolved (of that model) as it is."""
    if isinstance(rev, Resolved):
        if rev.model != model:
            raise UsageError(f"{rev} is a version of {rev.model!r}, not of {model!r}")
        return rev
    return resolve(repo, f"{model}@{rev}" if rev else model)


def resolve_branch(repo: Repo, model: str, name: str) -> Resolved:
    """The tip of a branch named by itself (no other kind of name can match)."""
    return Resolved(model, repo.refs.require(branch(model, name)), "branch", name)


def _resolve_rev(repo: Repo, spec: Spec) -> Resolved:
    model, rev = spec.model, spec.rev
    if rev is None:
        binding = repo.binding(model)
        if binding and binding.branch is None and binding.version:
            return Resolved(model, binding.version, "head")
        name = head_branch(repo, model)
        value = repo.refs.get(branch(model, name))
        if value is None:
            _require_model(repo, model)
            remotes = _remotes_tracking(repo, model)
            hint = (
                f"it was fetched from {remotes[0]}: name {model}@{remotes[0]}/{name}, "
                f"or `mvc pull {remotes[0]} {model}`"
                if remotes
                else f"name a REV: {model}@REV"
            )
            raise NotFound(f"model {model!r} has no local branch {name!r}", hint=hint)
        return Resolved(model, value, "branch", name)
    if rev.startswith(RANGE_START):
        name, version = resolve_range(repo, model, rev)
        return Resolved(model, version, "range", name)
    if looks_like_range(rev):
        # 1, v2, 1.x, *, 1.0 - 1.4: a range, unless a branch, channel or id prefix has the name
        named = _candidates(repo, model, rev, None)
        if named and _only_an_id(repo, model, rev, named):
            # An all-digit id prefix (95503364…) no release matches: only the id can be meant,
            # so the short ids mvc prints in hints paste back as they are.
            return named[0]
        if named:
            listing = "; ".join(f"{c.kind} {c.name or rev} -> {short(c.version)}" for c in named)
            raise AmbiguousSpec(
                f"{model}@{rev} is ambiguous: a semver range, or {listing}",
                hint=f"say which: {model}@{named[0].kind}={rev}, or {model}@={rev} for the range",
            )
        name, version = resolve_range(repo, model, rev)
        return Resolved(model, version, "range", name)
    if rev == "latest" or _INSTANT.match(rev):
        # a branch, tag or channel of the same name would make the REV mean two things
        named = _candidates(repo, model, rev, None)
        if named:
            what = "the newest version" if rev == "latest" else "an instant"
            listing = "; ".join(f"{c.kind} {c.name} -> {short(c.version)}" for c in named)
            raise AmbiguousSpec(
                f"{model}@{rev} is ambiguous: {what}, or {listing}",
                hint=f"say which: {model}@{named[0].kind}={rev}",
            )
        if rev == "latest":
            return Resolved(model, _latest(repo, model), "latest")
        moment = parse_instant(rev)
        return Resolved(model, at_instant(repo, model, moment, head_branch(repo, model)), "instant")
    qualifier, eq, rest = rev.partition("=")
    only = qualifier if eq and qualifier in QUALIFIERS else None
    found = _candidates(repo, model, rest if only else rev, only)
    if len(found) > 1:
        listing = "; ".join(
            f"{c.kind} {c.name or short(c.version)} -> {short(c.version)}" for c in found
        )
        raise AmbiguousSpec(
            f"{model}@{rev} is ambiguous: {listing}",
            hint=f"say which: {model}@branch={rev}, {model}@tag={rev}, {model}@channel={rev} or {model}@id={rev}",
        )
    if not found:
        _require_model(repo, model)
        names = [r.name for r in repo.refs.list_refs(model=model)]
        suggestion = did_you_mean(rest if only else rev, names)
        listing = f"list them with `mvc branch {model}`, `mvc tag {model}`, `mvc log {model}`"
        raise NotFound(
            f"{model}@{rev}: no branch, tag, channel or version id of that name",
            hint=f"{suggestion} ({listing})" if suggestion else listing,
        )
    return found[0]


def _remotes_tracking(repo: Repo, model: str) -> list[str]:
    """Remotes whose fetched (tracking) refs name ``model``."""
    return [r for r in remote_names(repo) if tracking_refs(repo, r).list_refs(model=model)]


def model_known(repo: Repo, model: str) -> bool:
    """A model with refs here, or one fetched from a remote."""
    return bool(repo.refs.list_refs(model=model, live=False) or _remotes_tracking(repo, model))


def did_you_mean(name: str, candidates: list[str]) -> str | None:
    """ "did you mean 'bert'?" for the closest of ``candidates`` to a mistyped ``name``."""
    import difflib

    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    return "did you mean " + " or ".join(repr(c) for c in close) + "?" if close else None


def unknown_model(repo: Repo, model: str) -> NotFound:
    """The error for a model this store does not know, with the closest names it does."""
    if "/" in model and os.path.lexists(model):  # models/bert: a path, meant as a model?
        bound = repo.binding_for_path(model) if os.path.isdir(model) else None
        kind = "folder" if os.path.isdir(model) else "file"
        hint = (
            f"it is the working folder of model {bound.model!r}: name the model, {bound.model}"
            if bound is not None
            else f"{model} is a {kind} here; a version is named MODEL[@REV] (see `mvc models`)"
        )
        return NotFound(f"no model named {model!r} in this store", hint=hint)
    suggestion = did_you_mean(model, repo.refs.models())
    hint = f"{suggestion} (see `mvc models`)" if suggestion else "see `mvc models`"
    return NotFound(f"no model named {model!r} in this store", hint=hint)


def _require_model(repo: Repo, model: str) -> None:
    if not model_known(repo, model):
        raise unknown_model(repo, model)


def _remote_candidate(repo: Repo, model: str, rev: str) -> Resolved | None:
    """``origin/main`` or ``origin/v1.2.0``: a branch or tag as last fetched from a remote."""
    remote, _, name = rev.partition("/")
    if not name or remote not in remote_names(repo):
        return None
    refs = tracking_refs(repo, remote)
    for kind, names in ((HEADS, [name]), (TAGS, tag_candidates(name))):
        hit = _lookup_ref_in(refs, functools.partial(RefName, model, kind), names)
        if hit:
            return Resolved(model, hit[1], "remote", rev)
    return None


def semver_tags(repo: Repo, model: str, *, live: bool = True) -> list[tuple[str, semver.Version]]:
    """The model's tags whose names are semantic versions (``live=False``: deleted ones too)."""
    found = []
    for ref in repo.refs.list_refs(TAGS, model, live=live):
        version = parse_semver(ref.name)
        if version is not None:
            found.append((ref.name, version))
    return found


def _only_an_id(repo: Repo, model: str, rev: str, named: list[Resolved]) -> bool:
    """Whether a REV that reads as a range too names one version id prefix and no release
    (pre-releases included) falls in the range."""
    if len(named) != 1 or named[0].kind != "id":
        return False
    return not highest_match(semver_tags(repo, model), parse_range(rev), include_prerelease=True)


def resolve_range(
    repo: Repo, model: str, text: str, *, include_prerelease: bool = False
) -> tuple[str, ObjectId]:
    """The highest tag of ``model`` matching the range, as (tag name, version id)."""
    rng = parse_range(text)
    tags = semver_tags(repo, model)
    best = highest_match(tags, rng, include_prerelease=include_prerelease)
    if not best:
        if not repo.refs.list_refs(model=model, live=False):
            raise unknown_model(repo, model)
        releases = sorted((v for _, v in tags if not v.prerelease), reverse=True)
        listing = ", ".join(f"v{v}" for v in releases[:8]) or "none"
        hint = f"list tags with `mvc tag {model}`"
        if highest_match(tags, rng, include_prerelease=True):
            hint = (
                "only pre-releases match; name one in the range to include them, "
                f"e.g. {model}@^{next(iter(highest_match(tags, rng, include_prerelease=True)))[1]}"
            )
        raise NotFound(
            f"no release of {model!r} matches {text!r} ({rng.canonical()}); "
            f"highest releases: {listing}",
            hint=hint,
        )
    targets = {name: repo.refs.get(tag(model, name)) for name, _ in best}
    distinct = {v for v in targets.values() if v}
    if len(distinct) > 1:
        listing = "; ".join(f"tag {n} -> {short(v or '')}" for n, v in sorted(targets.items()))
        raise AmbiguousSpec(
            f"{model}@{text} is ambiguous: tags of equal precedence name different versions: {listing}",
            hint=f"name the tag exactly, e.g. {model}@tag={best[0][0]}",
        )
    name = best[0][0]
    value = targets[name]
    assert value is not None
    return name, value
