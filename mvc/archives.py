"""Archive records: which versions have their chunks in cold storage, where, since when, why.

A record is a small canonical-JSON file, ``.mvc/archive/<version id>.json``, written atomically
(temp file, fsync, rename) and removed by ``mvc restore``. Its presence means: this version's
data is in cold storage; checkout, load and export refuse it (``Archived``, exit 24) and name
``mvc restore``. The version's metadata (version, tree, manifests) always stays local, so the
version stays listed and resolvable.

The order of an archive keeps every version readable at every instant (docs/storage-format.md):
the chunks are copied to the cold remote and read back and verified there, then the record is
written, and only then are the local copies deleted. The record lists exactly the chunks that
move (never one a live version needs), so the chunks it names are *promised* by the cold remote
the way a partial clone's are by its origin (``mvc.remotes.promised_objects``): fsck reports
them missing-but-expected and can check the remote has them; gc keeps the record's version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mvc.canonical import decode_json, encode_canonical
from mvc.errors import Archived, CorruptObject, NotFound
from mvc.ids import ObjectId, is_object_id, short
from mvc.jsonshape import JsonShaped
from mvc.storage.base import Storage

FOLDER = "archive"
RECORD_TYPE = "archive"
FORMAT = 1


@dataclass(frozen=True)
class ArchiveRecord(JsonShaped):
    model: str
    version: ObjectId
    remote: str  # the cold remote's name
    url: str  # its URL when the chunks were written (for people: the name is what restore uses)
    when: str  # ISO-8601 UTC
    who: str
    rule: str  # which rule archived it ("manual" for `mvc archive`)
    chunks: tuple[ObjectId, ...]  # the chunks moved (none of them needed by a live version)
    bytes: int  # their decoded size

    def value(self) -> dict[str, Any]:
        return {
            "type": RECORD_TYPE,
            "format": FORMAT,
            "model": self.model,
            "version": self.version,
            "remote": self.remote,
            "url": self.url,
            "when": self.when,
            "who": self.who,
            "rule": self.rule,
            "chunks": list(self.chunks),
            "bytes": self.bytes,
        }


def record_key(version: ObjectId) -> str:
    return f"{FOLDER}/{version}.json"


def decode_archive(data: bytes, what: str) -> ArchiveRecord:
    value = decode_json(data, what)
    try:
        if value["type"] != RECORD_TYPE or value["format"] != FORMAT:
            raise TypeError("not an archive record of format 1")
        chunks = tuple(ObjectId(c) for c in value["chunks"])
        version = value["version"]
        if not is_object_id(version) or not all(is_object_id(c) for c in chunks):
            raise TypeError("ids are not object ids")
        fields = [value[k] for k in ("model", "remote", "url", "when", "who", "rule")]
        if not all(isinstance(f, str) for f in fields) or not isinstance(value["bytes"], int):
            raise TypeError("a field has the wrong type")
    except (KeyError, TypeError) as exc:
        raise CorruptObject(
            f"{what} is damaged ({exc})",
            hint="run `mvc fsck`; the chunks it named are on the cold remote it named",
        ) from exc
    model, remote, url, when, who, rule = fields
    return ArchiveRecord(
        model, ObjectId(version), remote, url, when, who, rule, chunks, value["bytes"]
    )


def read_archive(storage: Storage, version: ObjectId) -> ArchiveRecord | None:
    """The archive record of ``version``, or None when it is not archived."""
    key = record_key(version)
    try:
        data = storage.read(key)
    except NotFound:
        return None
    return decode_archive(data, f"archive record {key}")


def list_archives(storage: Storage) -> list[ArchiveRecord]:
    """Every archive record, by version id. A file that is not a record's name is skipped."""
    found = []
    for name in sorted(storage.list(FOLDER)):
        stem = name.removesuffix(".json")
        if name.endswith(".json") and is_object_id(stem):
            record = read_archive(storage, ObjectId(stem))
            if record is not None:
                found.append(record)
    return found


def write_archive(storage: Storage, record: ArchiveRecord) -> None:
    storage.write(record_key(record.version), [encode_canonical(record.value())])


def drop_archive(storage: Storage, version: ObjectId) -> None:
    storage.delete(record_key(version))


def archived_error(record: ArchiveRecord) -> Archived:
    return Archived(
        f"{record.model}@{short(record.version)} is archived: its chunks are on cold remote "
        f"{record.remote} since {record.when} ({record.rule})",
        hint=f"bring it back with `mvc restore {record.model}@{short(record.version)}`",
    )
