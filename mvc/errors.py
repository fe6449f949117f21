"""The one error root of mvc, and the published exit-code table (docs/exit-codes.md).

Every error says what failed, on which object, and what to do next (``hint``). The CLI maps
``exit_code`` to the process status; the library never exits.
"""

from __future__ import annotations

import errno

# The exit-code table. Keep docs/exit-codes.md in step with it.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_NO_STORE = 10
EXIT_CONFLICT = 11
EXIT_CORRUPT = 12
# Production and lifecycle outcomes scripts branch on (guard, gates, deprecation, archive).
EXIT_SLO_BROKEN = 20  # guard: the candidate broke an SLO (rolled back, or would be with --dry-run)
EXIT_INCONCLUSIVE = 21  # guard: too few samples to decide; nothing changed
EXIT_GATE_REFUSED = 22  # a channel move that a promotion gate refuses
EXIT_DEPRECATED = 23  # a version past its deprecation cutoff, resolved for use
EXIT_ARCHIVED = 24  # a version whose chunks are in cold storage (mvc restore)
EXIT_STALE_LOCK = 25  # mvc.lock no longer matches mvc.yaml or the store
EXIT_INTERRUPTED = 130


class MvcError(Exception):
    """Root of every error mvc raises on purpose."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(MvcError):
    """The caller asked for something malformed (bad spec, bad flag combination)."""

    exit_code = EXIT_USAGE


class InvalidName(UsageError):
    """A model, branch, tag, channel or remote name that is not allowed."""


class NotFound(MvcError):
    """A model, ref, version, file or object that does not exist."""


class AmbiguousSpec(UsageError):
    """A version spec that could mean more than one thing."""


class InvalidInput(MvcError):
    """User data mvc refuses to trust: a malformed safetensors file, a hostile path, bad YAML."""


class NothingToDo(MvcError):
    """Not an error for the CLI (exit 0); raised only where a caller must be told explicitly."""

    exit_code = EXIT_OK


class PartialFailure(MvcError):
    """Some of the work was done, some not; the message says which."""

    exit_code = EXIT_PARTIAL


class StoreNotFound(MvcError):
    exit_code = EXIT_NO_STORE


class UnknownFormat(MvcError):
    """A store (or object) of a format version this mvc does not know."""

    exit_code = EXIT_NO_STORE


class LockTimeout(MvcError):
    exit_code = EXIT_CONFLICT


class RefConflict(MvcError):
    """A compare-and-swap on a ref lost: someone else moved it first."""

    exit_code = EXIT_CONFLICT


class ImmutableRef(RefConflict):
    """A tag (or other immutable name) that would have to move."""


class DirtyWorkingFolder(MvcError):
    """Uncommitted changes would be overwritten."""


class CorruptObject(MvcError):
    exit_code = EXIT_CORRUPT

    def __init__(self, message: str, *, object_id: str | None = None, hint: str | None = None):
        super().__init__(
            message,
            hint=hint
            or "`mvc fsck` lists damage; `mvc fsck --quarantine` then `mvc pull REMOTE MODEL` "
            "fetches good copies from a remote",
        )
        self.object_id = object_id


class SignatureInvalid(CorruptObject):
    """A model signature that does not verify: changed files, another key, another version."""


class RemoteError(MvcError):
    """A remote failed permanently (403, 404, disk full) or served bad data."""


class Interrupted(MvcError):
    exit_code = EXIT_INTERRUPTED


# OSErrors the environment causes, not mvc: each becomes a clean one-line error (exit 1).
_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk full",
    errno.EROFS: "read-only",
    errno.EACCES: "denied",
    errno.EPERM: "denied",
    errno.ENAMETOOLONG: "too long",
}


def is_environment_error(exc: BaseException) -> bool:
    """A full disk or quota, a read-only file system, or permissions: the user's to fix."""
    return isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS


def environment_error(exc: OSError, what: str) -> MvcError:
    """The clean error for ``exc`` (see ``is_environment_error``) met while writing ``what``."""
    kind = _ENVIRONMENT_ERRNOS.get(exc.errno or 0)
    if kind == "disk full":
        return MvcError(
            f"disk full while writing {what}", hint="free space, then run the command again"
        )
    if kind == "read-only":
        return MvcError(
            f"cannot write {what}: the file system is read-only",
            hint="read commands (log, show, cat, fsck) still work; write commands need a "
            "writable store and folder",
        )
    if kind == "too long":
        return MvcError(
            f"cannot use {what}: the name is too long for this file system",
            hint="use a shorter path (a name holds at most 255 bytes, a path 4096)",
        )
    if kind == "denied":
        return MvcError(
            f"cannot write {what}: permission denied", hint="check the folder's permissions"
        )
    return MvcError(f"cannot write {what}: {exc.strerror or exc}")


#: What ``mmap`` fails with where a file system cannot map files (some FUSE and network mounts).
_CANNOT_MAP = frozenset({errno.ENODEV, errno.EACCES, errno.EINVAL, errno.ENOTSUP, errno.EPERM})


def cannot_map(exc: OSError) -> bool:
    """Whether ``mmap`` failed because the file system does not map files, rather than for lack
    of memory or a vanished file."""
    return exc.errno in _CANNOT_MAP


def unmappable(what: str, exc: OSError) -> MvcError:
    """The clean error for a large file mvc reads mapped, on a file system that cannot map it."""
    return MvcError(
        f"cannot read {what}: its file system does not map files into memory "
        f"({exc.strerror or exc}), which mvc reads large files with",
        hint="copy the folder to a local disk and run the command there",
    )


class PolicyError(UsageError):
    """The policy file (mvc.yaml) is malformed: the message starts with ``file:line:``."""


class GateRefused(MvcError):
    """A channel move that breaks a promotion gate (``--force -m WHY`` overrides, recorded)."""

    exit_code = EXIT_GATE_REFUSED


class SloBroken(MvcError):
    """A guard found the candidate arm breaking an SLO."""

    exit_code = EXIT_SLO_BROKEN


class Inconclusive(MvcError):
    """A guard or comparison without enough samples to decide; nothing was changed."""

    exit_code = EXIT_INCONCLUSIVE


class Deprecated(MvcError):
    """A version past its deprecation cutoff, resolved for use without ``--allow-deprecated``."""

    exit_code = EXIT_DEPRECATED


class VersionDeprecationWarning(DeprecationWarning):
    """Issued (once per process per version) by ``mvc.load``, ``mvc.resolve`` and ``Router``
    for a deprecated version before its cutoff: the message names the version, the date, the
    reason and the replacement."""


class Archived(MvcError):
    """A version whose chunks were moved to a cold remote; ``mvc restore SPEC`` brings them back."""

    exit_code = EXIT_ARCHIVED


class StaleLock(MvcError):
    """``mvc.lock`` does not match ``mvc.yaml`` (run ``mvc lock``) or names what the store lacks."""

    exit_code = EXIT_STALE_LOCK
