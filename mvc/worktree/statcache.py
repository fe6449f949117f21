"""The stat cache: path -> (stat facts, manifest), so unchanged files are never hashed twice.

Like git's index, an entry is trusted only when the file's size, mtime, ctime, inode and device
all match *and* the entry is not racy: its mtime and ctime must be older than the moment the
cache was written by ``RACY_MARGIN_NS``. A folder replaced by a timestamp-preserving copy
(``cp -rp``, ``rsync -a``, an unpacked archive) has new inodes and ctimes, so it is re-hashed.
A damaged cache file is ignored: it is only ever an optimisation.

Checkout does not fsync the files it writes (git, DVC and cp do not either: the store is what
must be durable, a working folder is a copy of it). After a power cut such a file may hold
zeros or be short while its inode looks as recorded, so checkout records the boot it wrote an
entry in without flushing it (``unflushed``: Linux's boot id), and an entry written unflushed
in another boot than this one is not trusted: the file is re-hashed once, and from then on its
entry is an ordinary one. Where the system gives no boot id, checkout fsyncs instead.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass

from mvc.ids import ObjectId, is_object_id
from mvc.objects import KINDS, TreeEntry
from mvc.worktree.scan import FileStat

RACY_MARGIN_NS = 2_000_000_000
VERSION = 2  # 2: an entry's tenth field is the boot it was written unflushed in (or null)
BOOT_ID = "/proc/sys/kernel/random/boot_id"


@functools.cache
def read_boot_id() -> str | None:
    """The id of the system's current boot (Linux), None where the system gives none."""
    try:
        with open(BOOT_ID, encoding="ascii") as handle:
            text = handle.read(100).strip()
    except (OSError, ValueError):
        return None
    return text if 0 < len(text) < 100 else None


def _same_inode(a: FileStat, b: FileStat) -> bool:
    return (a.ino, a.dev) == (b.ino, b.dev)


@dataclass(frozen=True)
class CachedFile:
    stat: FileStat
    entry: TreeEntry
    unflushed: str | None = None  # the boot the file was written in and not flushed


class StatCache:
    def __init__(self, path: str) -> None:
        self.path = path
        self.written_ns = 0
        self.files: dict[str, CachedFile] = {}
        self.dirty = False
        self.boot = read_boot_id()  # None: entries cannot be marked unflushed (flush instead)

    @classmethod
    def load(cls, path: str, *, older: str | None = None) -> StatCache:
        """The cache saved at ``path``; where there is none, a version 1 cache at ``older``
        (where an mvc that knew only version 1 kept it), to be saved at ``path``."""
        cache = cls(path)
        versions: tuple[int, ...] = (VERSION,)
        if older is not None and not os.path.exists(path):
            path, versions = older, (1,)
        try:
            with open(path, encoding="utf-8") as handle:
                raw = json.load(handle)
            version = raw.get("version")
            if version not in versions:
                return cache
            cache.written_ns = int(raw["written_ns"])
            for rel, item in raw["files"].items():
                if version == 1:
                    item = [*item, None]  # written by an mvc that fsynced every checkout
                size, mtime, ctime, ino, dev, exe, manifest, b3, kind, unflushed = item
                if not (is_object_id(manifest) and is_object_id(b3) and kind in KINDS):
                    continue
                if not (unflushed is None or isinstance(unflushed, str)):
                    continue
                stat = FileStat(size, mtime, ctime, ino, dev, bool(exe))
                entry = TreeEntry(ObjectId(manifest), size, b3, kind, bool(exe))
                cache.files[rel] = CachedFile(stat, entry, unflushed)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            cache.files = {}
            cache.written_ns = 0
        return cache

    def recorded(self, rel: str) -> TreeEntry | None:
        """The entry last recorded for ``rel``, trusted or not: what the file held then (a
        re-hash that finds the same content may keep it, see ``snapshot``)."""
        cached = self.files.get(rel)
        return cached.entry if cached is not None else None

    def lookup(self, rel: str, stat: FileStat) -> TreeEntry | None:
        cached = self.files.get(rel)
        if cached is None or cached.stat != stat:
            return None
        if cached.unflushed is not None and cached.unflushed != self.boot:
            return None  # written unflushed before a restart: it may hold zeros, re-hash it
        newest = max(stat.mtime_ns, stat.ctime_ns)
        if newest >= self.written_ns - RACY_MARGIN_NS:
            return None  # racy: it could have changed within the timestamp's granularity
        return cached.entry

    def record(
        self, rel: str, stat: FileStat, entry: TreeEntry, *, unflushed: bool = False
    ) -> None:
        """Remember a file's stat as observed *before* it was hashed; ``unflushed``: the caller
        wrote the file and did not fsync it (only where ``boot`` is known: else it must)."""
        old = self.files.get(rel)
        marker = self.boot if unflushed else None
        if (
            old is not None
            and old.unflushed is not None
            and self.boot in (old.unflushed, None)
            and _same_inode(old.stat, stat)
        ):
            # Re-hashed in the boot it was written in: that read the page cache, not the disk.
            # The same inode with a new mtime or ctime (touch, chmod) is not flushed either.
            # With no boot id now, whether the machine restarted is unknown: the mark stays.
            marker = old.unflushed
        cached = CachedFile(stat, entry, marker)
        fresh = max(stat.mtime_ns, stat.ctime_ns) >= self.written_ns - RACY_MARGIN_NS
        if fresh or old != cached:
            # A re-verified racy entry is saved again, with a later stamp, so it is trusted next time.
            self.files[rel] = cached
            self.dirty = True

    def forget_missing(self, present: set[str]) -> None:
        for rel in [r for r in self.files if r not in present]:
            del self.files[rel]
            self.dirty = True

    def save(self, *, force: bool = False) -> None:
        """Write the cache atomically (it is an optimisation: no fsync needed)."""
        if not (self.dirty or force):
            return
        self.written_ns = time.time_ns()
        body = {
            "version": VERSION,
            "written_ns": self.written_ns,
            "files": {
                rel: [
                    c.stat.size,
                    c.stat.mtime_ns,
                    c.stat.ctime_ns,
                    c.stat.ino,
                    c.stat.dev,
                    int(c.stat.executable),
                    c.entry.manifest,
                    c.entry.b3,
                    c.entry.kind,
                    c.unflushed,
                ]
                for rel, c in sorted(self.files.items())
            },
        }
        temp = f"{self.path}.tmp-{os.getpid()}"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)  # fails in a read-only store
            with open(temp, "w", encoding="utf-8") as handle:
                json.dump(body, handle, separators=(",", ":"))
            os.replace(temp, self.path)
        except OSError:
            try:
                os.unlink(temp)
            except OSError:
                pass
            return  # losing the cache only costs a re-hash
        self.dirty = False

    def has_racy_entries(self) -> bool:
        limit = time.time_ns() - RACY_MARGIN_NS
        return any(max(c.stat.mtime_ns, c.stat.ctime_ns) >= limit for c in self.files.values())
