"""Helpers of the fault suite, importable by any fault test (``from faultkit import ...``);
``conftest.py`` wraps them as fixtures. See conftest.py for what each promise check does."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: Environment variable of the test-only crash hook (mvc/faults.py): ``point[:n]``.
CRASH_ENV = "MVC_CRASH_AT"

_ERROR_LINE = re.compile(r"^error: \S")


# --- running the real entry point -----------------------------------------------------------------


class MvcProcess:
    """``mvc_proc(*args, cwd=..., env=..., expect=0)`` runs ``python -m mvc`` in a subprocess."""

    def __init__(self, base_env: dict[str, str]) -> None:
        self.base_env = base_env

    def __call__(
        self,
        *args: Any,
        cwd: Any = None,
        env: dict[str, str] | None = None,
        expect: int | None = 0,
        timeout: float = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "mvc", *map(str, args)],
            cwd=None if cwd is None else str(cwd),
            env={**self.base_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if expect is not None and done.returncode != expect:
            raise AssertionError(
                f"mvc {' '.join(map(str, args))} exited {done.returncode}, expected {expect}\n"
                f"stdout: {done.stdout}\nstderr: {done.stderr}"
            )
        return done

    def fails(
        self,
        *args: Any,
        code: int,
        match: str | None = None,
        cwd: Any = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> str:
        """Run and assert a clean failure with exit ``code``; returns the error line."""
        done = self(*args, cwd=cwd, env=env, expect=code, timeout=timeout)
        return assert_clean_error(done.stderr, match=match, stdout=done.stdout)

    def crashes(
        self, *args: Any, point: str, cwd: Any = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run with the crash hook set to ``point``; assert the process died by SIGKILL there."""
        import signal

        done = self(*args, cwd=cwd, env={**(env or {}), CRASH_ENV: point}, expect=None)
        assert done.returncode == -signal.SIGKILL, (
            f"mvc {' '.join(map(str, args))} with {CRASH_ENV}={point} exited {done.returncode} "
            f"instead of being killed there (is the crash point reached?)\n"
            f"stdout: {done.stdout}\nstderr: {done.stderr}"
        )
        return done


def assert_clean_error(stderr: str, *, match: str | None = None, stdout: str = "") -> str:
    """One ``error:`` line, at most one ``hint:`` line after it, no traceback; returns the error."""
    assert "Traceback" not in stderr, stderr
    assert "internal error" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    assert len(errors) == 1, f"expected one error line, got:\n{stderr}"
    after = lines[lines.index(errors[0]) + 1 :]
    assert all(line.startswith("hint: ") for line in after) and len(after) <= 1, stderr
    if match is not None:
        assert re.search(match, errors[0]), f"{match!r} not in {errors[0]!r}"
    assert not stdout.strip(), f"a failing command printed data to stdout: {stdout!r}"
    return errors[0]


# --- a store with something to lose ---------------------------------------------------------------


@dataclass
class Versions:
    """What the ``versions`` fixture made: ids by name and the bytes of each version's files."""

    repo: Any
    root: str
    ids: dict[str, str] = field(default_factory=dict)  # "bert@1" -> version id
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # version id -> {path: bytes}


def read_version_files(repo: Any, version_id: str) -> dict[str, bytes]:
    """Every file of a version, read (and verified) from the store."""
    objects = repo.objects
    tree = objects.get_tree(objects.get_version(version_id).tree)
    out = {}
    for path, entry in tree.files.items():
        manifest = objects.manifest_of(entry)
        out[path] = b"".join(bytes(piece) for piece in objects.iter_file(manifest, path))
    return out


# --- the "nothing lost" invariant ---------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    refs: dict[str, str | None]  # str(ref) -> value, deleted refs included (None)
    reachable: frozenset[str]
    files: dict[str, dict[str, bytes]]  # version id -> {path: bytes}, every version a ref names


def snapshot(repo: Any, *, files: bool = True) -> Snapshot:
    """The state a fault must not lose: refs, reachable objects, old versions' bytes."""
    from mvc import graph

    fresh = _reopen(repo)
    refs = {str(ref): fresh.refs.get(ref) for ref in fresh.refs.list_refs(live=False)}
    roots = [value for value in refs.values() if value]
    reachable = graph.reachable(fresh.objects, roots).reached
    versions = {oid for oid in reachable if _is_version(fresh, oid)}
    contents = {oid: read_version_files(fresh, oid) for oid in versions} if files else {}
    return Snapshot(refs, frozenset(reachable), contents)


def _is_version(repo: Any, oid: str) -> bool:
    from mvc import codec

    stored = repo.objects.read_stored(oid)
    return codec.is_meta(stored) and repo.objects.get_meta(oid).get("type") == "version"


def _reopen(repo: Any) -> Any:
    """A fresh Repo on the same root: nothing cached from before the fault."""
    from mvc.repo import Repo

    return Repo(repo.root)


class NothingLost:
    """``in_process``: the ``cli`` fixture, to run ``mvc fsck`` through the real app in this
    process (the fault happened in another one; nothing of it is cached here) instead of paying
    a fresh interpreter's start-up for each check."""

    def __init__(self, proc: MvcProcess, in_process: Any = None) -> None:
        self.proc = proc
        self.in_process = in_process

    def check(
        self, repo: Any, before: Snapshot, *, fsck: bool = True, allow: Iterable[str] = ()
    ) -> Snapshot:
        """Assert the invariant against ``before``; returns the snapshot taken now.

        A ref may stay, or move to a new value whose closure is complete and whose log is an
        unbroken chain through the old value; ``allow`` lists refs that may also have been
        deleted. Refs that appeared must be complete too.
        """
        fresh = _reopen(repo)
        allowed = set(allow)
        refs = {str(ref): ref for ref in fresh.refs.list_refs(live=False)}
        now = {name: fresh.refs.get(ref) for name, ref in refs.items()}
        for name, old in before.refs.items():
            assert name in now or old is None, f"ref {name} vanished (was {old})"
            new = now.get(name)
            if new == old:
                continue
            _assert_logged_from(fresh, refs[name], old)
            if new is None:
                assert name in allowed, f"ref {name} was deleted (was {old})"
                continue
            _assert_complete(fresh, new, name)
        for name in set(now) - set(before.refs):
            if now[name]:
                _assert_complete(fresh, now[name], name)  # type: ignore[arg-type]
        for oid in sorted(before.reachable):
            fresh.objects.get_bytes(oid)  # raises CorruptObject / NotFound
        for oid, old_files in before.files.items():
            assert read_version_files(fresh, oid) == old_files, f"version {oid[:12]} changed"
        if fsck and self.in_process is not None:
            ran = self.in_process("-C", repo.root, "fsck", expect=None)
            assert ran.exit_code == 0, f"fsck after the fault:\n{ran.stdout}\n{ran.stderr}"
        elif fsck:
            done = self.proc("fsck", cwd=repo.root, expect=None)
            assert done.returncode == 0, f"fsck after the fault:\n{done.stdout}\n{done.stderr}"
        return snapshot(fresh, files=False)


def _assert_logged_from(repo: Any, ref: Any, old: str | None) -> None:
    """The ref's log is an unbroken chain that passes through ``old``: the move is recorded."""
    log = repo.refs.entries(ref)
    previous = None
    for index, entry in enumerate(log):
        assert entry.seq == index + 1 and entry.old == previous, f"{ref}: log broken at {index}"
        previous = entry.new
    assert old is None or any(e.new == old for e in log), f"{ref}: log never held {old}"


def _assert_complete(repo: Any, oid: str, name: str) -> None:
    from mvc.graph import reachable

    walked = reachable(repo.objects, [oid])
    missing = [(m.object, m.needed_by) for m in walked.missing]
    for found in walked.reached:
        repo.objects.get_bytes(found)
    assert not missing, (
        f"ref {name} points at {oid[:12]} whose closure is incomplete: {missing[:3]}"
    )
