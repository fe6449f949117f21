"""Branches and tags: create, list, delete — each a compare-and-swap on the ref's log; and
removing a model's names altogether (``mvc rm``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mvc.errors import ImmutableRef, MvcError, RefConflict, UsageError
from mvc.graph import ANCESTRY, reachable
from mvc.ids import ObjectId, short
from mvc.jsonshape import JsonShaped, Shape
from mvc.ops.channels import chain, load_record
from mvc.refnames import (
    CHANNELS,
    HEADS,
    KIND_WORD,
    NOTES,
    TAGS,
    RefName,
    branch,
    tag,
    validate_model,
)
from mvc.refs import RefEntry, RefUpdate
from mvc.remotes import ensure_present
from mvc.repo import Repo
from mvc.specs import Resolved, model_known, resolve_model_rev, unknown_model
from mvc.versioning import normalize_tag, parse_semver, same_release


@dataclass
class NamedRef(JsonShaped):
    model: str
    kind: str
    name: str
    target: ObjectId | None
    current: bool = False  # the branch a working folder has checked out

    json_shape: ClassVar[Shape] = Shape(rename={"target": "version"}, exclude=("kind",))


def _known_model(repo: Repo, model: str) -> None:
    validate_model(model)

    if not model_known(repo, model):
        raise unknown_model(repo, model)


def list_refs(repo: Repo, model: str, kind: str) -> list[NamedRef]:
    _known_model(repo, model)
    binding = repo.binding(model)
    return [
        NamedRef(
            model,
            kind,
            ref.name,
            repo.refs.get(ref),
            current=bool(kind == HEADS and binding and binding.branch == ref.name),
        )
        for ref in repo.refs.list_refs(kind, model)
    ]


def create_branch(repo: Repo, model: str, name: str, rev: str | Resolved | None = None) -> RefEntry:
    _known_model(repo, model)
    target = resolve_model_rev(repo, model, rev).version
    ref = branch(model, name)
    if repo.refs.get(ref) is not None:
        raise RefConflict(
            f"branch {name!r} of {model!r} already exists",
            hint=f"delete it first (`mvc branch {model} -d {name}`) or pick another name",
        )
    return _point(repo, ref, None, target, f"branch: created from {rev or 'HEAD'}")


def delete_branch(repo: Repo, model: str, name: str, *, force: bool = False) -> RefEntry:
    """Delete a branch. Like git's ``branch -d``, refused when versions on it would be reached
    by no other branch, tag or channel (their history included), unless ``force`` (``-D``)."""
    ref = branch(model, name)
    current = repo.refs.require(ref)
    binding = repo.binding(model)
    if binding and binding.branch == name:
        raise UsageError(
            f"branch {name!r} is checked out in {binding.path}",
            hint="check out another branch first",
        )
    if not force:
        lost = unreachable_without(repo, ref, current)
        if lost:
            raise MvcError(
                f"branch {name!r} of {model!r} is not merged: deleting it leaves {len(lost)} "
                f"version(s) no branch, tag or channel reaches (newest {short(current)})",
                hint=f"merge or tag them first, or `mvc branch {model} -D {name}` to delete "
                "it anyway (gc then collects them)",
            )
    return repo.refs.set_if_equals(ref, current, None, "branch: deleted")


def unreachable_without(repo: Repo, ref: RefName, tip: ObjectId) -> set[ObjectId]:
    """The versions (and history) ``tip`` reaches that no other live branch, tag or channel
    of the store does (a channel reaches the versions of every record in its chain)."""
    roots: list[ObjectId] = []
    for other in repo.refs.list_refs():
        if other == ref or other.kind == NOTES:
            continue
        value = repo.refs.get(other)
        if value is None:
            continue
        if other.kind != CHANNELS:
            roots.append(value)
            continue
        for record in chain(repo, load_record(repo, value)):
            roots.extend(record.refs())
    others = reachable(repo.objects, roots, ANCESTRY).reached
    return reachable(repo.objects, [tip], ANCESTRY, known=others).reached - others


def create_tag(
    repo: Repo, model: str, name: str, rev: str | Resolved | None = None, message: str = ""
) -> RefEntry:
    """Point a new tag at a version. Re-tagging a name that ever named another version is refused;
    tagging a name at the version it already names is a success that changes nothing (the
    entry that created the tag comes back).

    A semantic version is also refused when a tag of equal precedence (the same version with
    other build metadata) ever named another version: ranges could not choose between them.
    """
    _known_model(repo, model)
    name = normalize_tag(name)
    target = resolve_model_rev(repo, model, rev).version
    ref = tag(model, name)
    version = parse_semver(name)
    if version is not None:
        for other in repo.refs.list_refs(TAGS, model, live=False):
            other_version = parse_semver(other.name)
            if other.name == name or other_version is None:
                continue
            if not same_release(version, other_version):
                continue
            named = {e.new for e in repo.refs.entries(other) if e.new is not None}
            if named - {target}:
                raise ImmutableRef(
                    f"tag {name!r} of {model!r} has the precedence of {other.name!r}, which named "
                    f"version {short(next(iter(named - {target})))}; build metadata cannot tell "
                    "two versions apart",
                    hint="pick a new version number (`mvc tag --bump patch`)",
                )
    log = repo.refs.entries(ref)
    current = log[-1].new if log else None
    if current == target:
        return log[-1]  # already so: a CI job that re-runs `mvc tag` succeeds, nothing moves
    if current is not None or any(e.new not in (None, target) for e in log):
        previous = current or next(e.new for e in log if e.new)
        raise ImmutableRef(
            f"tag {name!r} of {model!r} already named version {short(previous or '')}; tags never move",
            hint="pick a new version number (`mvc tag --bump patch`)",
        )
    return _point(repo, ref, current, target, message or "tag: created")


def delete_tag(repo: Repo, model: str, name: str, *, force: bool) -> RefEntry:
    name = normalize_tag(name)
    ref = RefName(model, TAGS, name)
    current = repo.refs.require(ref)
    if not force:
        raise UsageError(
            f"deleting tag {name!r} needs --force",
            hint="the name stays reserved: it can never name another version",
        )
    return repo.refs.set_if_equals(ref, current, None, "tag: deleted (name stays reserved)")


def _point(
    repo: Repo, ref: RefName, expected: ObjectId | None, target: ObjectId, why: str
) -> RefEntry:
    """Move a ref to a version whose whole closure is here (fetched data is pulled first),
    holding the objects lock so gc cannot collect it in between."""
    ensure_present(repo, target)
    with repo.writing_objects():
        return repo.refs.set_if_equals(ref, expected, target, why)


@dataclass
class RemovedModel(JsonShaped):
    """What ``mvc rm MODEL`` deleted: every live ref of the model, and its working-folder
    binding (the folder's files stay). Versions stay in the store until ``gc``; deleted tag
    names stay reserved."""

    model: str
    branches: list[str]
    tags: list[str]
    channels: list[str]
    unbound: str | None  # the working folder it was bound to


def remove_model(repo: Repo, model: str, *, force: bool = False) -> RemovedModel:
    """Delete a model's branches (and, with ``force``, its tags and channels) in one
    all-or-nothing ref transaction, and forget its working folder."""
    validate_model(model)
    refs = repo.refs.list_refs(model=model)
    if not refs and repo.binding(model) is None:
        raise unknown_model(repo, model)
    kept = [r for r in refs if r.kind != HEADS]
    if kept and not force:
        listing = ", ".join(f"{KIND_WORD[r.kind]} {r.name}" for r in kept[:5])
        more = f" and {len(kept) - 5} more" if len(kept) > 5 else ""
        raise UsageError(
            f"model {model!r} still has {listing}{more}: releases or deployments may need it",
            hint=f"`mvc rm {model} --force` deletes them too (tag names stay reserved)",
        )
    updates = [RefUpdate(r, repo.refs.get(r), None) for r in refs]
    if updates:
        repo.refs.transaction(updates, f"rm: model {model} removed")
    binding = repo.binding(model)
    if binding is not None:
        repo.remove_binding(model)
    return RemovedModel(
        model,
        [r.name for r in refs if r.kind == HEADS],
        [r.name for r in refs if r.kind == TAGS],
        [r.name for r in refs if r.kind not in (HEADS, TAGS)],
        binding.path if binding else None,
    )
