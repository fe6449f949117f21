"""Semantic versions for tags: normalising names, npm-style ranges, and computing the next version.

- A tag name that looks like a version (``v1.4.0``, ``1.4.0-rc.1+build.7``) must be valid SemVer 2.0
  (checked with the ``semver`` package) and is stored as ``v`` + its canonical form, so ``1.4.0``
  and ``v1.4.0`` are the same tag. Other names (``baseline``) are plain tags.
- Ranges follow npm (node-semver): ``^`` and ``~`` (and ``~>``), comparators ``< <= > >= =``,
  x-ranges (``1.x``, ``1.2``, ``*``), hyphen ranges (``1.2 - 2``), a space or a comma between
  comparators means AND and ``||`` means OR. A pre-release matches only if the range names a
  pre-release of the same ``MAJOR.MINOR.PATCH`` (or ``include_prerelease`` is asked for).
- ``next_version`` bumps from the highest release ever tagged (deleted tags included: their names
  stay reserved); ``--pre LABEL`` counts ``LABEL.1``, ``LABEL.2`` … below that release.

Everything here is pure: ``mvc.specs`` resolves a range against a model's tags and
``mvc.ops.bump`` plans a ``--bump``. The grammar and the bump
rules are published in docs/versioning.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mvc.errors import InvalidName, UsageError
from mvc.refnames import validate_tag

if TYPE_CHECKING:
    import semver


BUMPS = ("major", "minor", "patch", "auto")
LEVELS = ("none", "patch", "minor", "major")  # in increasing order of consequence

_LOOKS_LIKE_VERSION = re.compile(r"^[vV]?\d+(\.|$)")  # v1, 1.4, 1.4.0.1 — not 2024-release
_PRE_LABEL = re.compile(r"^[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*$")


# --- single versions ------------------------------------------------------------------------------


def parse_semver(name: str) -> semver.Version | None:
    """The semver.Version a tag name spells (``v1.2.0`` or ``1.2.0``), or None."""
    import semver

    text = name[1:] if name[:1] in ("v", "V") else name
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError):
        return None


def looks_like_version(name: str) -> bool:
    return bool(_LOOKS_LIKE_VERSION.match(name))


def normalize_tag(name: str) -> str:
    """Semantic versions are stored as ``v`` + the canonical SemVer string; other names as given.

    A name that starts like a version (``v1``, ``1.4``) but is not valid SemVer 2.0 is refused,
    so a typo never becomes a plain tag that ranges silently ignore.
    """
    version = parse_semver(name)
    if version is not None:
        return validate_tag("v" + str(version))
    if looks_like_version(name):
        raise InvalidName(
            f"tag {name!r} looks like a version but is not valid SemVer 2.0",
            hint="write MAJOR.MINOR.PATCH with optional -PRERELEASE and +BUILD, e.g. v1.4.0 or v2.0.0-rc.1",
        )
    return validate_tag(name)


def same_release(a: semver.Version, b: semver.Version) -> bool:
    """Equal precedence: build metadata does not count (SemVer 2.0 §10)."""
    return a.compare(b) == 0


# --- ranges ---------------------------------------------------------------------------------------

_OPS = ("<=", ">=", "<", ">", "=")


@dataclass(frozen=True)
class Comparator:
    op: str  # one of _OPS
    version: semver.Version

    def test(self, version: semver.Version) -> bool:
        order = version.compare(self.version)
        return {
            "<": order < 0,
            "<=": order <= 0,
            ">": order > 0,
            ">=": order >= 0,
            "=": order == 0,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.op}{self.version}"


@dataclass(frozen=True)
class Range:
    """An OR of AND-sets of comparators; an empty AND-set matches every release."""

    text: str
    sets: tuple[tuple[Comparator, ...], ...]

    def matches(self, version: semver.Version, *, include_prerelease: bool = False) -> bool:
        return any(_test_set(s, version, include_prerelease) for s in self.sets)

    def canonical(self) -> str:
        """The comparators the range desugars to, e.g. ``>=1.4.0 <2.0.0-0``."""
        return " || ".join(" ".join(str(c) for c in s) or "*" for s in self.sets)


def _test_set(
    comparators: tuple[Comparator, ...], version: semver.Version, include_prerelease: bool
) -> bool:
    if not all(c.test(version) for c in comparators):
        return False
    if not version.prerelease or include_prerelease:
        return True
    # npm: a pre-release matches only a set that names a pre-release of the same release.
    return any(
        c.version.prerelease
        and (c.version.major, c.version.minor, c.version.patch)
        == (version.major, version.minor, version.patch)
        for c in comparators
    )


_PARTIAL = re.compile(
    r"^[vV]?(?P<major>\d+|[xX*])"
    r"(?:\.(?P<minor>\d+|[xX*])"
    r"(?:\.(?P<patch>\d+|[xX*])"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?)?)?$"
)
_NUMBER = re.compile(r"^(0|[1-9]\d*)$")


@dataclass(frozen=True)
class _Partial:
    major: int | None
    minor: int | None
    patch: int | None
    pre: str | None


def _version(major: int, minor: int, patch: int, pre: str | None = None) -> semver.Version:
    import semver

    return semver.Version(major, minor, patch, prerelease=pre)


def _parse_partial(text: str, whole: str) -> _Partial:
    if text in ("", "*", "x", "X"):
        return _Partial(None, None, None, None)
    match = _PARTIAL.match(text)
    if not match:
        raise _bad_range(whole, f"{text!r} is not a version")
    parts: list[int | None] = []
    for key in ("major", "minor", "patch"):
        raw = match.group(key)
        if raw is None or raw in ("x", "X", "*") or (parts and parts[-1] is None):
            parts.append(None)
            continue
        if not _NUMBER.match(raw):
            raise _bad_range(whole, f"{raw!r} has a leading zero")
        parts.append(int(raw))
    pre = match.group("pre")
    if pre is not None:
        if parts[2] is None:
            raise _bad_range(whole, f"{text!r}: a pre-release needs a full MAJOR.MINOR.PATCH")
        for ident in pre.split("."):
            if ident.isdigit() and len(ident) > 1 and ident.startswith("0"):
                raise _bad_range(
                    whole, f"{text!r}: pre-release number {ident!r} has a leading zero"
                )
    return _Partial(parts[0], parts[1], parts[2], pre)


def _bad_range(text: str, detail: str) -> UsageError:
    return UsageError(
        f"bad semver range {text!r}: {detail}",
        hint="ranges look like ^1.4, ~1.4.2, >=1,<2, 1.x or 1.2.0 - 1.4 (see docs/versioning.md)",
    )


def _xrange(p: _Partial) -> list[Comparator]:
    if p.major is None:
        return []
    if p.minor is None:
        return [
            Comparator(">=", _version(p.major, 0, 0)),
            Comparator("<", _version(p.major + 1, 0, 0, "0")),
        ]
    if p.patch is None:
        return [
            Comparator(">=", _version(p.major, p.minor, 0)),
            Comparator("<", _version(p.major, p.minor + 1, 0, "0")),
        ]
    return [Comparator("=", _version(p.major, p.minor, p.patch, p.pre))]


def _tilde(p: _Partial) -> list[Comparator]:
    if p.major is None:
        return []
    if p.minor is None:
        return _xrange(p)
    low = _version(p.major, p.minor, p.patch or 0, p.pre)
    return [Comparator(">=", low), Comparator("<", _version(p.major, p.minor + 1, 0, "0"))]


def _caret(p: _Partial) -> list[Comparator]:
    if p.major is None:
        return []
    if p.minor is None:
        return _xrange(p)
    low = _version(p.major, p.minor, p.patch or 0, p.pre)
    if p.major > 0:
        high = _version(p.major + 1, 0, 0, "0")
    elif p.minor > 0 or p.patch is None:
        high = _version(0, p.minor + 1, 0, "0")
    else:
        high = _version(0, 0, p.patch + 1, "0")
    return [Comparator(">=", low), Comparator("<", high)]


def _primitive(op: str, p: _Partial) -> list[Comparator]:
    nothing = [Comparator("<", _version(0, 0, 0, "0"))]
    if op == "=":
        return _xrange(p)
    if p.major is None:
        return nothing if op in ("<", ">") else []
    if p.minor is None or p.patch is None:
        major, minor = p.major, p.minor or 0
        # the first version past the x-range, and its start
        after = _version(major + 1, 0, 0) if p.minor is None else _version(major, minor + 1, 0)
        start = _version(major, minor, 0)
        return {
            ">": [Comparator(">=", after)],
            ">=": [Comparator(">=", start)],
            "<": [Comparator("<", _version(start.major, start.minor, start.patch, "0"))],
            "<=": [Comparator("<", _version(after.major, after.minor, after.patch, "0"))],
        }[op]
    return [Comparator(op, _version(p.major, p.minor, p.patch, p.pre))]


def _hyphen(low: _Partial, high: _Partial) -> list[Comparator]:
    out: list[Comparator] = []
    if low.major is not None:
        out.append(Comparator(">=", _version(low.major, low.minor or 0, low.patch or 0, low.pre)))
    if high.major is not None:
        out.extend(_primitive("<=", high))
    return out


_OP_SPACE = re.compile(r"(<=|>=|~>|<|>|=|~|\^)\s+")
_SIMPLE = re.compile(r"^(?P<op><=|>=|~>|<|>|=|~|\^)?(?P<rest>.*)$")


def parse_range(text: str) -> Range:
    """Parse an npm-style range (see the module docstring); UsageError names what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise _bad_range(str(text), "empty range")
    sets: list[tuple[Comparator, ...]] = []
    for alternative in text.split("||"):
        part = _OP_SPACE.sub(r"\1", alternative.strip())
        hyphen = re.match(r"^(\S+)\s+-\s+(\S+)$", part)
        if hyphen:
            sets.append(
                tuple(
                    _hyphen(
                        _parse_partial(hyphen.group(1), text), _parse_partial(hyphen.group(2), text)
                    )
                )
            )
            continue
        comparators: list[Comparator] = []
        tokens = [t for t in re.split(r"[\s,]+", part) if t]
        if not tokens:
            raise _bad_range(text, "empty alternative around '||'")
        for token in tokens:
            match = _SIMPLE.match(token)
            assert match
            op, rest = match.group("op"), match.group("rest")
            if op and not rest:
                raise _bad_range(text, f"{op!r} needs a version after it")
            partial = _parse_partial(rest, text)
            if op == "^":
                comparators += _caret(partial)
            elif op in ("~", "~>"):
                comparators += _tilde(partial)
            elif op:
                comparators += _primitive(op, partial)
            else:
                comparators += _xrange(partial)
        sets.append(tuple(comparators))
    return Range(text, tuple(sets))


RANGE_START = ("^", "~", "<", ">", "=")
_LOOSE_START = re.compile(r"^[vV]?(\d|[xX*](\.|$|\s))")


def looks_like_range(text: str) -> bool:
    """A REV that is a range: it starts with ``^ ~ < > =``, or it is a partial version, an
    x-range, ``*``, a hyphen range or an OR of ranges (``1``, ``v2``, ``1.x``, ``*``,
    ``1.0 - 1.4``, ``1.x || 2.x``). An exact version (``1.2.0``) is a tag, not a range."""
    if text.startswith(RANGE_START):
        return True
    if not _LOOSE_START.match(text) or parse_semver(text) is not None:
        return False
    try:
        parse_range(text)
    except UsageError:
        return False
    return True


def highest_match(
    candidates: Iterable[tuple[str, semver.Version]],
    rng: Range,
    *,
    include_prerelease: bool = False,
) -> list[tuple[str, semver.Version]]:
    """The highest-precedence candidates that satisfy the range (several only on a build tie)."""
    best: list[tuple[str, semver.Version]] = []
    for name, version in candidates:
        if not rng.matches(version, include_prerelease=include_prerelease):
            continue
        if not best or version.compare(best[0][1]) > 0:
            best = [(name, version)]
        elif version.compare(best[0][1]) == 0:
            best.append((name, version))
    return sorted(best)


# --- bumps ----------------------------------------------------------------------------------------


def validate_pre_label(label: str) -> str:
    """A pre-release label such as ``rc`` or ``beta`` (``.N`` is appended when counting)."""
    if not _PRE_LABEL.match(label) or label.isdigit() or parse_semver(f"1.0.0-{label}.1") is None:
        raise UsageError(
            f"pre-release label {label!r} is not valid",
            hint="use letters, digits and '-', e.g. --pre rc or --pre beta",
        )
    return label


def next_version(
    existing: Iterable[semver.Version], bump: str, pre: str | None = None
) -> semver.Version:
    """The next version after the highest release in ``existing`` (none: 0.0.0).

    ``pre`` makes it a pre-release ``LABEL.N`` of that next release, N one past the highest
    ``LABEL.N`` already used for it (starting at 1).
    """
    import semver

    if bump not in ("major", "minor", "patch"):
        raise UsageError(f"unknown bump {bump!r}", hint="use major, minor or patch")
    versions = list(existing)
    releases = [v for v in versions if not v.prerelease]
    base = max(releases, default=semver.Version(0, 0, 0))
    target = {"major": base.bump_major, "minor": base.bump_minor, "patch": base.bump_patch}[bump]()
    if pre is None:
        return target
    validate_pre_label(pre)
    prefix = pre + "."
    used = [0]
    for v in versions:
        if v.finalize_version() != target or not v.prerelease:
            continue
        if v.prerelease.startswith(prefix) and v.prerelease[len(prefix) :].isdigit():
            used.append(int(v.prerelease[len(prefix) :]))
    return target.replace(prerelease=f"{pre}.{max(used) + 1}")
