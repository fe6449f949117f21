"""Which chunks repack stores as deltas, and against what (DESIGN.md §4, storage-format.md).

A fine-tuned tensor differs from its parent's in the low bits. Repack pairs each chunk of a
safetensors tensor with the chunk of its *parent* that covers the same bytes of the same
tensor: the tensor has the same name, dtype and shape in the version's first parent or, failing
that, in its ``lineage.base`` (an adapter's or merged model's base), and both chunks have the
same length (chunks are cut per tensor, in equal element-aligned pieces, so piece ``k`` of a
tensor covers the same elements in every version). The chunk is then stored as the XOR against
that base chunk, or the integer difference of their elements, whichever is smaller, byte-grouped,
when that is smaller than its best self-contained encoding.

Invariants this planner keeps, whatever order versions come in and whatever the store holds:

- **No cycle.** A chunk is never made a delta against a chain that leads back to it (a version
  that reverts a tensor names a chunk its own child is a delta against).
- **Bounded chains.** A chain (a delta, its base, that one's base…) has at most
  ``codec.MAX_DELTA_DEPTH`` deltas; where a base is already that deep, the chunk stays whole
  and starts a new chain.
- **Levels.** Pairs come out grouped by depth, so a chunk is encoded only after its base has
  its final encoding, and its header's depth is exact.
- **What is a delta stays one.** A chunk already stored as a delta keeps its encoding: repack
  run twice does nothing the second time.

Ids never change: a delta is a storage detail of the envelope (codec.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mvc import codec
from mvc.errors import CorruptObject, InvalidInput, MvcError, NotFound
from mvc.formats.safetensors import TensorInfo, float_width
from mvc.ids import ObjectId, hash_bytes, is_object_id
from mvc.objects import KIND_SAFETENSORS, Version
from mvc.storage.base import Buffer
from mvc.store import ObjectStore
from mvc.tensors import StoredTensorFile

#: Chunks smaller than this stay as they are (repack's own threshold).
MIN_DELTA = 4096


@dataclass(frozen=True)
class Pair:
    """Store ``chunk`` as a delta against ``base``; ``width`` groups the XOR'd bytes."""

    chunk: ObjectId
    base: ObjectId
    width: int | None


_Index = dict[tuple[str, str], tuple[StoredTensorFile, TensorInfo]]


class _Tensors:
    """The safetensors tensors of versions, by (path, name) and by name, read once each."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self._cache: dict[
            ObjectId, tuple[_Index, dict[str, tuple[StoredTensorFile, TensorInfo]]]
        ] = {}

    def of(
        self, version: ObjectId
    ) -> tuple[_Index, dict[str, tuple[StoredTensorFile, TensorInfo]]]:
        found = self._cache.get(version)
        if found is not None:
            return found
        by_path: _Index = {}
        by_name: dict[str, tuple[StoredTensorFile, TensorInfo]] = {}
        try:
            tree = self.objects.get_tree(self.objects.get_version(version).tree)
            for path, entry in sorted(tree.files.items()):
                if entry.kind != KIND_SAFETENSORS:
                    continue
                manifest = self.objects.manifest_of(entry)
                if not manifest.chunks:
                    continue
                stored = StoredTensorFile(self.objects, manifest, path)
                try:
                    header = stored.header()
                except (MvcError, InvalidInput):
                    continue  # its header chunk is not here (a fetched version) or is damaged
                for tensor in header.tensors:
                    by_path[(path, tensor.name)] = (stored, tensor)
                    by_name.setdefault(tensor.name, (stored, tensor))
        except MvcError:
            pass  # a version whose metadata is not all here has no tensors to offer
        self._cache[version] = (by_path, by_name)
        return by_path, by_name


def parents_for_deltas(version: Version) -> list[ObjectId]:
    """Where a version's tensors are looked for: its first parent, then its lineage base."""
    found = list(version.parents[:1])
    base = version.lineage.get("base")
    if isinstance(base, dict):
        oid = base.get("version")
        if isinstance(oid, str) and is_object_id(oid) and oid not in found:
            found.append(ObjectId(oid))
    return found


def candidate_pairs(objects: ObjectStore, versions: Iterable[ObjectId]) -> list[Pair]:
    """Every (chunk, parent's chunk of the same bytes of the same tensor) pair of ``versions``,
    in the order given; pairs of equal chunks are left out (already stored once)."""
    tensors = _Tensors(objects)
    pairs: list[Pair] = []
    for oid in versions:
        try:
            version = objects.get_version(oid)
        except MvcError:
            continue
        parents = [p for p in parents_for_deltas(version) if objects.has(p)]
        if not parents:
            continue
        mine, _ = tensors.of(oid)
        for (path, name), (stored, tensor) in mine.items():
            for parent in parents:
                theirs_by_path, theirs_by_name = tensors.of(parent)
                match = theirs_by_path.get((path, name)) or theirs_by_name.get(name)
                if match is None:
                    continue
                other, their_tensor = match
                if their_tensor.dtype != tensor.dtype or their_tensor.shape != tensor.shape:
                    continue
                pairs += _chunk_pairs(stored, tensor, other, their_tensor)
                break
    return pairs


def _chunk_pairs(
    mine: StoredTensorFile, tensor: TensorInfo, theirs: StoredTensorFile, their: TensorInfo
) -> list[Pair]:
    ids = mine.chunk_ids(tensor.start, tensor.end)
    base_ids = theirs.chunk_ids(their.start, their.end)
    if not ids or base_ids is None or len(ids) != len(base_ids):
        return []
    sizes = [p.length for p in mine.pieces(tensor.start, tensor.end)]
    base_sizes = [p.length for p in theirs.pieces(their.start, their.end)]
    if sizes != base_sizes:
        return []  # cut differently (another piece size): no chunk covers the same bytes
    width = float_width(tensor.dtype)
    return [
        Pair(chunk, base, width)
        for chunk, base, size in zip(ids, base_ids, sizes, strict=True)
        if chunk != base and size >= MIN_DELTA
    ]


def plan_levels(objects: ObjectStore, pairs: Iterable[Pair]) -> list[list[Pair]]:
    """The pairs to encode, level by level (level ``k``: the result is a delta of depth
    ``k + 1``), with cycles, too-deep chains and chunks already stored as deltas left out.
    Each chunk gets the first base offered for it."""
    chosen: dict[ObjectId, ObjectId] = {}
    on_disk: dict[ObjectId, ObjectId | None] = {}
    levels: list[list[Pair]] = []

    def stored_base(oid: ObjectId) -> ObjectId | None:
        if oid not in on_disk:
            try:
                found = codec.header_delta_base(objects.read_header(oid))
            except (NotFound, CorruptObject):
                found = None
            on_disk[oid] = ObjectId(found[0]) if found and is_object_id(found[0]) else None
        return on_disk[oid]

    def base_of(oid: ObjectId) -> ObjectId | None:
        return chosen[oid] if oid in chosen else stored_base(oid)

    for pair in pairs:
        if pair.chunk in chosen or stored_base(pair.chunk) is not None:
            continue
        if not objects.has(pair.base) or not objects.has(pair.chunk):
            continue
        chain: list[ObjectId] = []
        step: ObjectId | None = pair.base
        while step is not None and step != pair.chunk and len(chain) < codec.MAX_DELTA_DEPTH:
            chain.append(step)
            step = base_of(step)
        if step is not None:  # a cycle back to the chunk, or the base's chain is full
            continue
        chosen[pair.chunk] = pair.base
        depth = len(chain)  # the base's chain holds len(chain) objects: this delta's depth
        while len(levels) < depth:
            levels.append([])
        levels[depth - 1].append(pair)
    return levels


def encode_against(objects: ObjectStore, pair: Pair) -> tuple[list[Buffer], int, int] | None:
    """The smallest encoding of ``pair.chunk`` (a delta against ``pair.base`` or self-contained),
    its stored size now and after; None when the chunk is not here. A delta is decoded and
    hashed against the chunk's id before it is returned: nothing unverified is written."""
    try:
        stored = objects.read_stored(pair.chunk)
        base_stored = objects.read_stored(pair.base)
    except NotFound:
        return None
    if codec.delta_base(stored) is not None:
        return None  # became a delta meanwhile (another path to it): keep it
    data = objects.decode_stored(pair.chunk, stored)
    base = objects.decode_stored(pair.base, base_stored)
    found = codec.delta_base(base_stored)
    width = pair.width or codec.element_width(stored)
    best: list[Buffer] = [stored]
    best_size = len(stored)
    plain = codec.encode(data, elem_width=width, compress=True)
    # Raw again is no gain, only a raw chunk's page padding dropped: the stored one stays.
    raw_again = codec.is_raw(plain[0]) and codec.is_raw(stored)
    if not raw_again and sum(len(p) for p in plain) < best_size:
        best, best_size = plain, sum(len(p) for p in plain)
    for transform in codec.TRANSFORMS:  # XOR, then integer difference: the smaller wins
        delta = codec.encode_delta(
            data,
            pair.base,
            base,
            base_depth=found[1] if found else 0,
            elem_width=width,
            transform=transform,
        )
        if delta is not None and sum(len(p) for p in delta) < best_size:
            joined = b"".join(bytes(p) for p in delta)
            decoded = codec.decode(joined, lambda _base: base, expected_size=len(data))
            if hash_bytes(decoded) != pair.chunk:
                raise CorruptObject(f"a delta of {pair.chunk[:12]} does not decode to it")
            best, best_size = [joined], len(joined)
    return best, len(stored), best_size
