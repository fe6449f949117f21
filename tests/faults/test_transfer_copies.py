"""How a transfer copies and verifies chunks (issue 14, push speed): between two folders a chunk
is copied through a small buffer, each slice hashed and written from it, never read whole into
Python; a compressed chunk pushed from this store is
verified by its stored-bytes checksum (sb3), never decoded; a header that disagrees with its
bytes, or bytes that changed under the copy, never get in."""

from __future__ import annotations

import struct

import pytest
from _integrity_helpers import data_chunks, fsck_json, object_path

from mvc import codec
from mvc.canonical import encode_canonical
from mvc.repo import Repo
from mvc.storage import local
from mvc.storage.local import LocalStorage
from mvc.store import ObjectStore, object_key


def _committed(cli, make_model, scale: int = 4) -> str:
    make_model("models/bert", seed=1, scale=scale)
    return str(cli("commit", "models/bert", "-m", "one").stdout.strip())


def _envelope(header: dict, payload: bytes) -> bytes:
    head = encode_canonical(header)
    return codec.MAGIC + struct.pack("<I", len(head)) + head + payload


def test_push_between_folders_copies_each_chunk_through_a_hasher(
    store, cli, make_model, tmp_path, monkeypatch
):
    version = _committed(cli, make_model)
    copied: list[int] = []
    original = local.copy_through

    def counting(
        src: int, dst: int, src_offset: int, dst_offset: int, length: int, through: local.Through
    ) -> None:
        copied.append(length)
        original(src, dst, src_offset, dst_offset, length, through)

    monkeypatch.setattr(local, "copy_through", counting)
    cli("remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    sent = cli("push", "origin", "bert", "--json").json()["transfer"]
    chunks = data_chunks(store, version)
    assert sent["chunks_sent"] == len(copied) >= len(chunks)  # every chunk, the header's too
    tree = store.objects.get_tree(store.objects.get_version(version).tree)
    weights = store.objects.manifest_of(tree.files["model.safetensors"])
    assert sum(copied) >= weights.size  # every byte of the weights went through the copy
    for chunk in chunks:
        assert (tmp_path / "remote" / object_key(chunk)).read_bytes() == object_path(
            store.store_dir, chunk
        ).read_bytes()
    cli("clone", f"file://{tmp_path / 'remote'}", tmp_path / "clone")
    assert fsck_json(cli, tmp_path / "clone", expect=0)["ok"]


def test_a_remote_object_rewritten_during_the_copy_is_caught_where_it_landed(
    store, cli, make_model, tmp_path, monkeypatch
):
    """Guarantee: the copy is hashed as it landed, not the source before it was copied: a
    remote object that changes between the look at its header and the copy never enters."""
    version = _committed(cli, make_model)
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", f"file://{remote}")
    cli("push", "origin", "bert")
    victim = data_chunks(store, version)[0]
    fresh = tmp_path / "fresh"
    cli("init", fresh)
    cli("-C", fresh, "remote", "add", "origin", f"file://{remote}")
    original = LocalStorage.write_from

    def racing(self, key, head, fd, offset, length, **kwargs):  # type: ignore[no-untyped-def]
        if key == object_key(victim):  # another writer rewrites the remote file right now
            import os

            os.pwrite(os.open(remote / key, os.O_WRONLY), b"\x42" * 64, offset + 16)
        return original(self, key, head, fd, offset, length, **kwargs)

    monkeypatch.setattr(LocalStorage, "write_from", racing)
    failed = cli("-C", fresh, "pull", "origin", "bert", expect=12)
    assert victim[:12] in failed.stderr and "does not hash to its id" in failed.stderr
    assert not object_path(fresh / ".mvc", victim).exists()
    assert not [p for p in (fresh / ".mvc" / "objects").rglob("*") if p.name.startswith(".tmp")]


def test_push_verifies_plain_zstd_chunks_by_their_checksum_and_decodes_the_others(
    store, cli, make_model, tmp_path, monkeypatch
):
    """A plain zstd frame's checksum covers every byte that decodes, so it is trusted; a
    grouped envelope's stream table (and a delta's base) sit in the header, outside sb3, so
    those are decoded and checked against their ids."""
    folder = make_model("models/bert", seed=1, scale=4)
    (folder / "notes.txt").write_text("a line of notes that compresses well\n" * 4000)
    version = str(cli("commit", "models/bert", "-m", "one").stdout.strip())
    assert cli("repack", "--json").json()["compressed"] > 0
    repo = Repo(str(store.root))
    tree = repo.objects.get_tree(repo.objects.get_version(version).tree)
    chunks = {c.id for e in tree.files.values() for c in repo.objects.manifest_of(e).chunks}
    kinds = {c: store.objects.read_header(c)["c"] for c in chunks}
    plain = {c for c, kind in kinds.items() if kind == "zstd"}
    grouped = {c for c, kind in kinds.items() if kind == "group"}
    assert plain and grouped
    decoded: list[str] = []
    original = ObjectStore.decode_stored

    def watching(self, oid, stored, **kwargs):  # type: ignore[no-untyped-def]
        decoded.append(oid)
        return original(self, oid, stored, **kwargs)

    monkeypatch.setattr(ObjectStore, "decode_stored", watching)
    cli("remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    cli("push", "origin", "bert")
    assert not plain & set(decoded) and grouped <= set(decoded)
    monkeypatch.setattr(ObjectStore, "decode_stored", original)
    cli("clone", f"file://{tmp_path / 'remote'}", tmp_path / "clone")
    assert fsck_json(cli, tmp_path / "clone", expect=0)["ok"]


@pytest.mark.parametrize("how", ["flipped", "padded", "resized", "regrouped"])
def test_push_refuses_a_compressed_chunk_whose_bytes_or_header_are_damaged(
    store, cli, make_model, tmp_path, how
):
    """Guarantee: a compressed chunk is sent only when its payload matches its checksum (sb3)
    and its header accounts for the payload's length and the manifest's size; nothing of it
    reaches the remote and no remote ref moves."""
    version = _committed(cli, make_model)
    cli("repack")
    chunk = next(
        c for c in data_chunks(store, version) if store.objects.read_header(c)["c"] == "group"
    )
    path = object_path(store.store_dir, chunk)
    header, start = codec.read_header(path.read_bytes())
    payload = path.read_bytes()[start:]
    if how == "flipped":  # a damaged byte of the stored payload
        damaged = path.read_bytes()[:-1] + bytes([path.read_bytes()[-1] ^ 0x01])
    elif how == "padded":  # junk after the streams, with a checksum that covers it
        payload += b"junk"
        damaged = _envelope({**header, "sb3": codec._stored_checksum([payload])}, payload)
    elif how == "resized":  # a header claiming another size than the file manifest records
        damaged = _envelope({**header, "n": header["n"] + 4}, payload)
    else:  # another element width in the header: sb3 (payload only) still matches
        width = 2 if header["w"] != 2 else 4
        damaged = _envelope({**header, "w": width}, payload)
    path.write_bytes(damaged)
    cli("remote", "add", "origin", f"file://{tmp_path / 'remote'}")
    failed = cli("push", "origin", "bert", expect=12)
    assert chunk[:12] in failed.stderr and "Traceback" not in failed.stderr
    assert not (tmp_path / "remote" / object_key(chunk)).exists()
    assert not list((tmp_path / "remote").glob("refs/*/*/*/*")), "no remote ref moved"
