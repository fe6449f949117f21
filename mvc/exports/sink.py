"""Where an export writes: a local folder or any fsspec URL, through mvc's storage layer.

Every file is written atomically (a reader sees the old file, or all of the new one) and
streamed from the store with every chunk verified. ``mvc-export.json`` at the destination
remembers the blake3 of each file an export wrote, so running an export again writes only files
that changed, and removes only files an earlier export wrote (never anything else).

Before an export writes a file that is not yet there, the manifest names it as ``pending``, so a
run killed part-way (even the very first) leaves a destination the next run recognises as its
own: pending files are rewritten or removed, never mistaken for somebody else's. A local
destination is written like a checkout: never through a symlink (a folder, a file or the
manifest itself), and temp files a killed run left there are removed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from mvc.canonical import encode_canonical
from mvc.errors import InvalidInput, NotFound, UsageError
from mvc.faults import crashpoint
from mvc.ids import ObjectId, hash_bytes, new_hasher
from mvc.repo import Repo
from mvc.storage.base import Storage
from mvc.storage.local import TMP_PREFIX, LocalStorage
from mvc.storage.remote import open_storage
from mvc.worktree.paths import safe_target, validate_version_path

MANIFEST = "mvc-export.json"
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# LocalStorage's temp names (``.tmp-`` + 16 hex digits): only these are cleaned up.
_STALE_TEMP = re.compile(rf"^{re.escape(TMP_PREFIX)}[0-9a-f]{{16}}$")


def is_url(dest: str) -> bool:
    return bool(_URL.match(dest))


def open_destination(dest: str, options: dict[str, str] | None = None) -> Storage:
    if not is_url(dest):
        if os.path.exists(dest) and not os.path.isdir(dest):
            raise UsageError(f"export destination {dest} is not a folder", hint="name a folder")
        return LocalStorage(os.path.abspath(dest), fsync=True)

    return open_storage(dest, options)


def default_serve_root(dest: str) -> str:
    """How the serving side names the destination, unless told otherwise."""
    return dest.rstrip("/") if is_url(dest) else os.path.abspath(dest)


@dataclass
class Sink:
    storage: Storage
    previous: dict[str, str] = field(default_factory=dict)  # key -> blake3, from the last export
    files: dict[str, str] = field(default_factory=dict)  # key -> blake3, written or kept now
    written: list[str] = field(default_factory=list)
    skipped: int = 0
    bytes_written: int = 0
    removed: list[str] = field(default_factory=list)
    dest: str = ""
    pending: set[str] = field(default_factory=set)  # keys named before being written

    @classmethod
    def open(cls, dest: str, options: dict[str, str] | None = None) -> Sink:
        storage = open_destination(dest, options)
        sink = cls(storage, dest=dest)
        sink.check(MANIFEST)
        try:
            raw = json.loads(storage.read(MANIFEST))
            files = raw.get("files", {}) if isinstance(raw, dict) else {}
            sink.previous = {k: v for k, v in files.items() if isinstance(v, str)}
            pending = raw.get("pending", []) if isinstance(raw, dict) else []
            if isinstance(pending, list):
                # Files a killed run meant to write: ours, with unknown content.
                sink.pending = {k for k in pending if isinstance(k, str)} - set(sink.previous)
                sink.previous.update(dict.fromkeys(sink.pending, ""))
        except NotFound:
            # No earlier export here: the destination must hold nothing we could overwrite.
            stray = next(iter(storage.walk("")), None)
            if stray is not None:
                raise UsageError(
                    f"{dest} already holds files no mvc export wrote (e.g. {stray})",
                    hint="export into an empty folder or prefix; mvc never overwrites files "
                    "it did not write",
                ) from None
        except ValueError as exc:
            raise InvalidInput(
                f"{MANIFEST} in {dest} is not valid JSON",
                hint="remove it; the next export rewrites every file",
            ) from exc
        for key in sink.previous:
            sink.check(key)  # a planted manifest must not delete through a link either
        root = storage.local_root()
        if root is not None:
            # Only now: the folder is known to be an export's (or empty but for temp files).
            _remove_stale_temps(root)
        return sink

    def check(self, key: str) -> None:
        """Refuse a key that is no safe path, or (in a local folder) lies behind a symlink."""
        try:
            root = self.storage.local_root()
            if root is not None:
                safe_target(root, key)
            else:
                validate_version_path(key)
        except InvalidInput as exc:
            raise InvalidInput(
                f"export to {self.dest}: {exc.message}",
                hint="remove the symlink (or the file in the way), or export into an empty folder",
            ) from exc

    def _intend(self, keys: list[str]) -> None:
        """Name ``keys`` in the manifest as pending before writing them (see the module doc)."""
        new = [k for k in keys if k not in self.previous and k not in self.pending]
        new = [k for k in new if not self.storage.exists(k)]  # existing ones are claimed or refused
        if not new:
            return
        self.pending.update(new)
        self.finish({"complete": False})

    def put_version(self, repo: Repo, version: ObjectId, prefix: str) -> None:
        """Every file of a version below ``prefix`` (unchanged files are left alone)."""
        tree = repo.objects.get_tree(repo.objects.get_version(version).tree)
        keys = [f"{prefix}/{path}" for path in sorted(tree.files)]
        for key in keys:
            self.check(key)
        self._intend(keys)
        for path, entry in sorted(tree.files.items()):
            key = f"{prefix}/{path}"
            if self._unchanged(key, entry.b3, entry.size) or self._claim(key, entry.b3):
                self.files[key] = entry.b3
                self.skipped += 1
                continue
            manifest = repo.objects.manifest_of(entry)
            self.check(key)
            self.storage.write(key, repo.objects.iter_file(manifest, path))
            self.files[key] = entry.b3  # only once written: a failed export records what it did
            crashpoint("export.file")
            self.written.append(key)
            self.bytes_written += entry.size

    def _claim(self, key: str, b3: str) -> bool:
        """Whether ``key`` already holds exactly these bytes (then it is adopted, not written).

        A different file there that the earlier export did not write is refused, never replaced.
        """
        if key in self.previous or not self.storage.exists(key):
            return False
        if self._content_b3(key) == b3:
            return True
        raise UsageError(
            f"{key} exists at the destination but no earlier export wrote it; it is left as it is",
            hint="move it away, or export into an empty folder or prefix",
        )

    def _content_b3(self, key: str) -> str:
        hasher = new_hasher()
        with self.storage.open_read(key) as handle:
            while block := handle.read(8 << 20):
                hasher.update(block)
        return str(hasher.hexdigest())

    def _unchanged(self, key: str, b3: str, size: int) -> bool:
        if self.previous.get(key) != b3:
            return False
        try:
            return self.storage.size(key) == size
        except NotFound:
            return False

    def put_text(self, key: str, text: str) -> None:
        data = text.encode("utf-8")
        digest = hash_bytes(data)
        self.check(key)
        self._intend([key])
        if self._unchanged(key, digest, len(data)) or self._claim(key, digest):
            self.files[key] = digest
            self.skipped += 1
            return
        self.check(key)
        self.storage.write(key, [data])
        self.files[key] = digest
        self.written.append(key)
        self.bytes_written += len(data)

    def prune(self, prefixes: list[str]) -> None:
        """Remove files an earlier export wrote below ``prefixes`` that this one did not."""
        for key in sorted(self.previous):
            if key in self.files or not any(key.startswith(p + "/") for p in prefixes):
                continue
            self.check(key)
            self.storage.delete(key)
            self.removed.append(key)

    def finish(self, about: dict[str, Any]) -> None:
        crashpoint("export.manifest")
        """Write the manifest: every file written or kept, and what is still only pending."""
        gone = set(self.removed)
        kept = {k: v for k, v in self.previous.items() if k not in gone and v}
        files = {**kept, **self.files}
        pending = sorted(self.pending - gone - set(files))
        body = {"format": 1, **about, "files": files, **({"pending": pending} if pending else {})}
        self.check(MANIFEST)
        self.storage.write(MANIFEST, [encode_canonical(body) + b"\n"])


def _remove_stale_temps(root: str) -> None:
    """Temp files a killed export left (never followed into symlinked folders)."""
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (".mvc", ".git")]  # never a store's own temps
        for name in names:
            if _STALE_TEMP.match(name):
                try:
                    os.unlink(os.path.join(folder, name))
                except OSError:
                    pass  # gone already, or not ours to remove: it is never listed anyway
