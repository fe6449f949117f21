"""The stat cache: path -> (stat facts, manifest), so unchanged files are never hashed twice.

Like git's index, an entry is trusted only when the file's size, mtime, ctime, inode and device
all match *and* the entry is not racy: its mtime and ctime must be older than the moment the
cache was written by ``RACY_MARGIN_NS``. A folder replaced by a timestamp-preserving copy
(``cp -rp``, ``rsync -a``, an unpacked archive) has new inodes and ctimes, so it is re-hashed.
A damaged cache file is ignored: it is only ever an optimisation.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from mvc.ids import ObjectId, is_object_id
from mvc.objects import KINDS, TreeEntry
from mvc.worktree.scan import FileStat

RACY_MARGIN_NS = 2_000_000_000
VERSION = 1


@dataclass(frozen=True)
class CachedFile:
    stat: FileStat
    entry: TreeEntry


class StatCache:
    def __init__(self, path: str) -> None:
        self.path = path
        self.written_ns = 0
        self.files: dict[str, CachedFile] = {}
        self.dirty = False

    @classmethod
    def load(cls, path: str) -> StatCache:
        cache = cls(path)
        try:
            with open(path, encoding="utf-8") as handle:
                raw = json.load(handle)
            if raw.get("version") != VERSION:
                return cache
            cache.written_ns = int(raw["written_ns"])
            for rel, item in raw["files"].items():
                size, mtime, ctime, ino, dev, exe, manifest, b3, kind = item
                if not (is_object_id(manifest) and is_object_id(b3) and kind in KINDS):
                    continue
                stat = FileStat(size, mtime, ctime, ino, dev, bool(exe))
                entry = TreeEntry(ObjectId(manifest), size, b3, kind, bool(exe))
                cache.files[rel] = CachedFile(stat, entry)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            cache.files = {}
            cache.written_ns = 0
        return cache

    def lookup(self, rel: str, stat: FileStat) -> TreeEntry | None:
        cached = self.files.get(rel)
        if cached is None or cached.stat != stat:
            return None
        newest = max(stat.mtime_ns, stat.ctime_ns)
        if newest >= self.written_ns - RACY_MARGIN_NS:
            return None  # racy: it could have changed within the timestamp's granularity
        return cached.entry

    def record(self, rel: str, stat: FileStat, entry: TreeEntry) -> None:
        """Remember a file's stat as observed *before* it was hashed."""
        fresh = max(stat.mtime_ns, stat.ctime_ns) >= self.written_ns - RACY_MARGIN_NS
        if fresh or self.files.get(rel) != CachedFile(stat, entry):
            # A re-verified racy entry is saved again, with a later stamp, so it is trusted next time.
            self.files[rel] = CachedFile(stat, entry)
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
