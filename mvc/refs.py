"""Refs: a ref *is* its append-only log of numbered entries.

Entry ``n`` of a ref lives at ``<ref folder>/<n as 10 digits>`` and records old value, new value,
who, when and why. The current value is the newest entry's ``new`` (``None``: deleted). Moving a
ref is creating entry n+1 with a create-if-absent write: whoever creates it first wins, so the
same compare-and-swap works on a local folder and on S3. A tag's log may only ever name one
version (or be deleted): tags never move, even after deletion.

On a local store, ref changes also hold the ``refs`` lock, and several refs changed together
are all-or-nothing: the planned entries are journalled first, and a transaction a crash left
half-applied is rolled forward before anyone reads a ref (every target is already complete:
closure before reference). A reader that finds a journal waits for the refs lock and finishes
the transaction, so no reader sees some of its refs moved and others not.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mvc.canonical import decode_json, encode_canonical
from mvc.errors import (
    CorruptObject,
    ImmutableRef,
    InvalidInput,
    InvalidName,
    MvcError,
    NotFound,
    PartialFailure,
    RefConflict,
)
from mvc.faults import crashpoint
from mvc.ids import ObjectId, is_object_id, short
from mvc.jsonshape import JsonShaped
from mvc.refnames import KIND_WORD, REF_KINDS, TAGS, RefName, unescape
from mvc.storage import lock
from mvc.storage.base import Storage

SEQ_DIGITS = 10
JOURNAL = "txn"


@dataclass(frozen=True)
class RefEntry(JsonShaped):
    seq: int
    old: ObjectId | None
    new: ObjectId | None
    who: str
    when: str
    why: str


@dataclass(frozen=True)
class RefUpdate:
    """Move ``ref`` from ``expected`` (None: must not exist) to ``new`` (None: delete)."""

    ref: RefName
    expected: ObjectId | None
    new: ObjectId | None


def _entry_key(ref: RefName, seq: int) -> str:
    return f"{ref.folder}/{seq:0{SEQ_DIGITS}d}"


def _optional_id(value: Any, key: str) -> ObjectId | None:
    if value is None:
        return None
    if not isinstance(value, str) or not is_object_id(value):
        raise InvalidInput(f"ref log entry field {key!r} is not an object id")
    return ObjectId(value)


def decode_entry(data: bytes, ref: RefName, seq: int) -> RefEntry:
    where = f"log entry {seq} of {ref}"
    try:
        raw = decode_json(data, where)
        if not isinstance(raw, dict) or raw.get("seq") != seq:
            raise InvalidInput(f"{where} is not a ref log entry for that position")
        for key in ("who", "when", "why"):
            if not isinstance(raw.get(key), str):
                raise InvalidInput(f"{where}: {key} is not text")
        return RefEntry(
            seq,
            _optional_id(raw.get("old"), "old"),
            _optional_id(raw.get("new"), "new"),
            raw["who"],
            raw["when"],
            raw["why"],
        )
    except InvalidInput as exc:
        raise CorruptObject(
            f"{exc.message} (torn by an interrupted write, or damaged)",
            hint="`mvc fsck --repair-refs` sets a torn entry aside; the ref then reads its "
            "previous value (its log keeps a note)",
        ) from exc


class RefStore:
    def __init__(
        self,
        storage: Storage,
        *,
        who: Callable[[], str],
        now: Callable[[], str],
        lock: Callable[[], Any] | None = None,
    ) -> None:
        self.storage = storage
        self._who = who
        self._now = now
        self._lock = lock  # a context-manager factory on local stores
        self._holding = False  # inside transaction(): the lock is ours and the journal handled

    # --- reading ------------------------------------------------------------------------------

    def _finish_interrupted(self) -> None:
        """Roll forward a journalled transaction before a read sees half of it. One listing
        of an (almost always empty) folder; only a local store journals."""
        if self._lock is None or self._holding or not self.storage.list(JOURNAL):
            return
        try:
            with self._lock():
                self.recover()
        except (MvcError, OSError):
            pass  # a read-only store, or a writer holding the lock: read what is there

    def _seqs(self, ref: RefName) -> list[int]:
        self._finish_interrupted()
        return self._listed_seqs(ref)

    def _listed_seqs(self, ref: RefName) -> list[int]:
        """``_seqs`` for a caller that has just settled the journal itself."""
        return sorted(
            int(n) for n in self.storage.list(ref.folder) if n.isdigit() and len(n) == SEQ_DIGITS
        )

    def entries(self, ref: RefName) -> list[RefEntry]:
        """The whole log, oldest first."""
        return [self._read_entry(ref, seq) for seq in self._seqs(ref)]

    def _read_entry(self, ref: RefName, seq: int) -> RefEntry:
        return decode_entry(self.storage.read(_entry_key(ref, seq)), ref, seq)

    def latest(self, ref: RefName) -> RefEntry | None:
        seqs = self._seqs(ref)
        return self._read_entry(ref, seqs[-1]) if seqs else None

    def _newest_value(self, ref: RefName) -> ObjectId | None:
        seqs = self._listed_seqs(ref)  # list_refs settled the journal once for every ref
        return self._read_entry(ref, seqs[-1]).new if seqs else None

    def get(self, ref: RefName) -> ObjectId | None:
        entry = self.latest(ref)
        return entry.new if entry else None

    def require(self, ref: RefName) -> ObjectId:
        value = self.get(ref)
        if value is None:
            import difflib

            names = [r.name for r in self.list_refs(ref.kind, ref.model)]
            close = difflib.get_close_matches(ref.name, names, n=3, cutoff=0.6)
            raise NotFound(
                f"{KIND_WORD[ref.kind]} {ref.name!r} of model {ref.model!r} does not exist",
                hint="did you mean " + " or ".join(repr(c) for c in close) + "?" if close else None,
            )
        return value

    def list_refs(
        self, kind: str | None = None, model: str | None = None, *, live: bool = True
    ) -> list[RefName]:
        """Refs in the store; ``live`` leaves out deleted ones."""
        self._finish_interrupted()  # a journalled ref may not have its folder yet
        found = []
        for ref_kind in (kind,) if kind else REF_KINDS:
            for model_seg in self.storage.list(f"refs/{ref_kind}"):
                name_model = unescape(model_seg)
                if model is not None and name_model != model:
                    continue
                for name_seg in self.storage.list(f"refs/{ref_kind}/{model_seg}"):
                    try:
                        ref = RefName(name_model, ref_kind, unescape(name_seg))
                    except (InvalidInput, InvalidName):
                        continue  # not ours: never trusted, never followed
                    if not live or self._newest_value(ref) is not None:
                        found.append(ref)
        return sorted(found)

    def models(self) -> list[str]:
        self._finish_interrupted()
        names: set[str] = set()
        for kind in REF_KINDS:
            names.update(unescape(seg) for seg in self.storage.list(f"refs/{kind}"))
        return sorted(names)

    # --- writing ------------------------------------------------------------------------------

    def _check_tag_rule(self, ref: RefName, log: Sequence[RefEntry], new: ObjectId | None) -> None:
        if ref.kind != TAGS or new is None:
            return
        for entry in log:
            if entry.new is not None and entry.new != new:
                raise ImmutableRef(
                    f"tag {ref.name!r} of model {ref.model!r} already named version "
                    f"{short(entry.new)}; tags never move",
                    hint="choose a new tag name (e.g. `mvc tag --bump patch`)",
                )

    def _plan(self, update: RefUpdate, why: str) -> tuple[str, RefEntry]:
        # Only a tag's rule needs its whole log; anything else needs just the newest entry
        # (on S3 every entry is one request).
        if update.ref.kind == TAGS:
            log = self.entries(update.ref)
        else:
            newest = self.latest(update.ref)
            log = [newest] if newest else []
        current = log[-1].new if log else None
        if current != update.expected:
            raise RefConflict(
                f"{update.ref} moved: it is at {short(current) if current else 'nothing'}, "
                f"expected {short(update.expected) if update.expected else 'nothing'}",
                hint="another process changed it first; look at the new state and run again",
            )
        self._check_tag_rule(update.ref, log, update.new)
        seq = (log[-1].seq + 1) if log else 1
        entry = RefEntry(seq, current, update.new, self._who(), self._now(), why)
        return _entry_key(update.ref, seq), entry

    def _create(self, key: str, entry: RefEntry, ref: RefName) -> None:
        crashpoint("refs.before-entry")
        if not self.storage.create_exclusive(key, encode_canonical(entry.to_json())):
            raise RefConflict(
                f"{ref} moved while this command ran (entry {entry.seq} was taken by another writer)",
                hint="run the command again; nothing was overwritten",
            )

    def set_if_equals(
        self, ref: RefName, expected: ObjectId | None, new: ObjectId | None, why: str
    ) -> RefEntry:
        """Compare-and-swap one ref; RefConflict if it is not at ``expected``."""
        return self.transaction([RefUpdate(ref, expected, new)], why)[0]

    def transaction(self, updates: Sequence[RefUpdate], why: str) -> list[RefEntry]:
        """Apply all updates: all-or-nothing locally, one by one (in order) on a remote."""
        if self._lock is None:
            return self._apply_in_order(updates, why)
        with self._lock():
            self._holding = True
            try:
                self.recover()
                planned = [self._plan(update, why) for update in updates]
                journal = self._write_journal(planned) if len(planned) > 1 else None
                moved: list[RefName] = []
                for (key, entry), update in zip(planned, updates, strict=True):
                    try:
                        self._create(key, entry, update.ref)
                    except MvcError as exc:
                        # Refused (a writer without the lock took the slot): the journal must
                        # not finish later what this command reports as failed.
                        if journal:
                            self.storage.delete(journal)
                        if not moved:
                            raise
                        raise PartialFailure(
                            f"{exc.message}; already moved: {', '.join(map(str, moved))}",
                            hint="the refs listed as moved are updated; run again to finish",
                        ) from exc
                    moved.append(update.ref)
                    crashpoint("refs.entry")
                if journal:
                    self.storage.delete(journal)
                return [entry for _key, entry in planned]
            finally:
                self._holding = False

    def _apply_in_order(self, updates: Sequence[RefUpdate], why: str) -> list[RefEntry]:
        done: list[RefEntry] = []
        for index, update in enumerate(updates):
            try:
                key, entry = self._plan(update, why)
                self._create(key, entry, update.ref)
            except RefConflict as exc:
                if not done:
                    raise
                moved = ", ".join(str(u.ref) for u in updates[:index])
                raise PartialFailure(
                    f"{exc.message}; already moved: {moved}",
                    hint="the refs listed as moved are updated; run again to finish the rest",
                ) from exc
            done.append(entry)
        return done

    def repair_torn(self, ref: RefName, keep: Callable[[int, bytes], str]) -> list[RefEntry]:
        """Replace each unreadable (torn) log entry whose neighbours are readable with a note
        entry that changes nothing: its ``old`` is the previous entry's value and its ``new``
        the next entry's ``old`` (for the newest entry: the previous value, so the ref reads
        what it was before the interrupted write). ``keep(seq, bytes)`` saves the torn bytes
        first and says where. Two torn entries in a row are left for a person to look at.
        Local stores only, with the refs lock held: the one place a log entry is rewritten."""
        seqs = self._seqs(ref)
        raw = {seq: self.storage.read(_entry_key(ref, seq)) for seq in seqs}
        decoded: dict[int, RefEntry | None] = {}
        for seq in seqs:
            try:
                decoded[seq] = decode_entry(raw[seq], ref, seq)
            except CorruptObject:
                decoded[seq] = None
        notes = []
        for index, seq in enumerate(seqs):
            if decoded[seq] is not None:
                continue
            prev = decoded[seqs[index - 1]] if index else None
            after = decoded[seqs[index + 1]] if index + 1 < len(seqs) else None
            if (index and prev is None) or (index + 1 < len(seqs) and after is None):
                continue
            old = prev.new if prev else None
            where = keep(seq, raw[seq])
            note = RefEntry(
                seq,
                old,
                after.old if after else old,
                self._who(),
                self._now(),
                f"repair: entry {seq} was torn (an interrupted write); set aside to {where}",
            )
            self.storage.write(_entry_key(ref, seq), [encode_canonical(note.to_json())])
            decoded[seq] = note
            notes.append(note)
        return notes

    def repair_chain(self, ref: RefName, keep: Callable[[int, bytes], str]) -> list[RefEntry]:
        """Rewrite each readable entry whose ``old`` is not the previous entry's ``new`` (an
        entry naming itself, or a value the ref never held) as a note with the same ``new`` and
        the right ``old``: the ref's value stays, its log is one chain again. ``keep`` saves
        the original bytes first. Same conditions as ``repair_torn``."""
        notes = []
        previous: RefEntry | None = None
        for seq in self._seqs(ref):
            key = _entry_key(ref, seq)
            data = self.storage.read(key)
            try:
                entry = decode_entry(data, ref, seq)
            except CorruptObject:  # torn: repair_torn's to mend (or a person's)
                previous = None
                continue
            old = previous.new if previous else None
            if entry.old != old and (previous is not None or seq == 1):
                where = keep(seq, data)
                entry = RefEntry(
                    seq,
                    old,
                    entry.new,
                    self._who(),
                    self._now(),
                    f"repair: entry {seq} did not follow entry {seq - 1} (its old was "
                    f"{entry.old}); set aside to {where}",
                )
                self.storage.write(key, [encode_canonical(entry.to_json())])
                notes.append(entry)
            previous = entry
        return notes

    def _write_journal(self, planned: list[tuple[str, RefEntry]]) -> str:
        key = f"{JOURNAL}/{os.urandom(8).hex()}"
        body = [{"key": k, "entry": e.to_json()} for k, e in planned]
        self.storage.write(key, [encode_canonical(body)])
        crashpoint("refs.journal")
        return key

    def recover(self) -> int:
        """Roll forward ref transactions a crash interrupted. Call with the refs lock held."""
        finished = 0
        for name in self.storage.list(JOURNAL):
            key = f"{JOURNAL}/{name}"
            try:
                body = decode_json(self.storage.read(key), "ref transaction journal")
                for item in body:
                    if not self.storage.exists(item["key"]):
                        self.storage.create_exclusive(item["key"], encode_canonical(item["entry"]))
                        crashpoint("refs.recover")
            except (InvalidInput, KeyError, TypeError):
                pass  # an unreadable journal was never committed to: nothing to roll forward
            self.storage.delete(key)
            finished += 1
        return finished


def local_ref_lock(store_root: str, timeout: float) -> Callable[[], Any]:
    path = os.path.join(store_root, "locks", "refs")

    @contextmanager
    def hold() -> Iterator[None]:
        with lock.hold(path, timeout=timeout):
            yield

    return hold
