"""Write the frozen store of format 2 (tests/data/frozen-store-2/) and its blake3 sums.

    python tests/data/make_frozen_store.py            # rewrites tests/data/frozen-store-2*

The result is committed and read back by tests/integration/test_frozen_store.py, so a change to
the on-disk format cannot go unnoticed, and a store written today stays readable by every later
mvc. Do not regenerate it to make that test pass: a store format 3 gets its own frozen store next
to this one. Deterministic: a fixed clock and identity, seeded tensors, no stat caches.

tests/data/frozen-store-1/ was written by this script as it was at commit 1f9b107, before format
2 (files of one chunk named by their tree entry, small safetensors files kept whole); it is never
written again, and stays read by the same tests.

What it holds (docs/storage-format.md, "The frozen store"):
- model ``bert`` bound to the working folder ``models/bert``: two versions on ``main`` (tags
  ``v1.0.0`` and ``v1.1.0``, the second with params, metrics and a parent), a branch
  ``experiment`` at the first, an ``.mvcignore`` and an ignored file left out of the versions;
- channel ``prod``: v1.0.0 set, then v1.1.0 as a 10% canary (two deployment records);
- envelopes of every codec: ``raw``, ``zstd`` (tokenizer, metadata), ``group`` (the 4-bit tensor,
  byte-grouped by ``mvc repack``) and one ``delta`` (a v1.1.0 tensor as the XOR against its
  v1.0.0 counterpart, built with ``codec.encode_delta``; commit does not make deltas yet);
- model ``bert-int4``: one 256 KiB tensor of pruned 4-bit levels (the size where byte grouping starts),
  committed from a scratch folder that is gone, so it has no working folder;
- remote ``origin`` (``memory://frozen-origin``) and its remote-tracking refs after a push.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import struct
import sys
from datetime import UTC, datetime, timedelta

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "frozen-store-2"
SUMS = HERE / "frozen-store-2.b3sums"
ENV = {"MVC_USER_NAME": "Frozen Writer", "MVC_USER_EMAIL": "frozen@example.com"}
LEFT_OUT = (".mvc/index", ".mvc/cache")  # derived data (stat caches hold inodes and mtimes)


class Clock:
    """One minute later at every call: distinct, reproducible times."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


def tensors(seed: int, tuned: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = {
        "embed.weight": rng.normal(0, 0.02, (64, 16)).astype(np.float32),
        "layer.0.weight": rng.normal(0, 0.02, (16, 16)).astype(np.float32),
        "layer.0.bias": np.zeros(16, np.float32),
    }
    if tuned:  # a fine-tune: the low bits of one tensor change, the rest stays identical
        low = rng.integers(0, 16, weights["embed.weight"].shape, dtype=np.uint32)
        weights["embed.weight"] = (weights["embed.weight"].view(np.uint32) ^ low).view(np.float32)
    return weights


def write_safetensors(path: pathlib.Path, weights: dict[str, np.ndarray]) -> None:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, value in weights.items():
        end = offset + value.nbytes
        header[name] = {"dtype": "F32", "shape": list(value.shape), "data_offsets": [offset, end]}
        offset = end
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    data = b"".join(np.ascontiguousarray(v, dtype="<f4").tobytes() for v in weights.values())
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def write_model(folder: pathlib.Path, *, tuned: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "model.safetensors", tensors(7, tuned))
    config = {"model_type": "bert", "hidden_size": 16, "layers": 1, "tuned": tuned}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    vocab = {f"token{i}": i for i in range(300)}
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"vocab": vocab}}) + "\n")
    (folder / ".mvcignore").write_text("*.tmp\n")
    (folder / "scratch.tmp").write_text("left out of every version\n")


def add_delta(repo, old_version: str, new_version: str) -> str:
    """Re-encode the first changed chunk of model.safetensors as a delta against its parent."""
    from mvc import codec

    objects = repo.objects

    def chunks(version: str) -> list[tuple[str, int]]:
        entry = objects.get_tree(objects.get_version(version).tree).files["model.safetensors"]
        return [(c.id, c.size) for c in objects.manifest_of(entry).chunks]

    for (base_id, base_size), (oid, size) in zip(
        chunks(old_version), chunks(new_version), strict=True
    ):
        if oid != base_id and size == base_size:
            data = objects.get_bytes(oid)
            stored = codec.encode_delta(
                data, base_id, objects.get_bytes(base_id), base_depth=0, elem_width=4
            )
            assert stored is not None, "the XOR of a low-bit change must compress"
            objects.replace_encoding(oid, stored)
            return oid
    raise AssertionError("no changed chunk of equal size")


def build(out: pathlib.Path) -> dict[str, str]:
    from mvc.ops import deploy
    from mvc.ops.commit import commit
    from mvc.ops.maintenance import repack
    from mvc.ops.names import create_branch, create_tag
    from mvc.ops.remotes import add_remote, push
    from mvc.repo import Repo

    # Versions record the git commit of the folder they come from; this folder has none.
    os.environ["GIT_CEILING_DIRECTORIES"] = str(out.parent)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    clock = Clock()
    # push.repack (later than this store) would re-encode chunks while pushing; this store's
    # one delta is the explicit add_delta below, so the files stay what format 1 recorded.
    env = {**ENV, "MVC_CORE_FSYNC": "false", "MVC_PUSH_REPACK": "false"}
    repo = Repo.init(str(out), env=env, clock=clock)
    folder = out / "models" / "bert"
    write_model(folder, tuned=False)
    first = commit(repo, str(folder), message="baseline", model="bert").version_id
    create_tag(repo, "bert", "v1.0.0", message="first release")
    write_model(folder, tuned=True)
    second = commit(
        repo,
        str(folder),
        message="fine-tuned on more data",
        params={"lr": 2e-05, "epochs": 3},
        metrics={"accuracy": 0.913},
    ).version_id
    create_tag(repo, "bert", "v1.1.0")
    create_branch(repo, "bert", "experiment", "v1.0.0")
    deploy.set_channel(repo, "bert", "prod", "v1.0.0", message="first release")
    deploy.deploy_canary(repo, "bert", "prod", "v1.1.0", 10, message="try the fine-tune")
    scratch = out.parent / f".{out.name}-scratch"  # a folder outside the store, never bound
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    rng = np.random.default_rng(3)  # pruned 4-bit levels: 95% zeros, so it stays a few KB
    levels = rng.integers(-8, 8, 65536) * (rng.random(65536) < 0.05) * 2.0**-6
    levels = levels.astype(np.float32)
    write_safetensors(scratch / "model.safetensors", {"dense.weight": levels.reshape(256, 256)})
    commit(repo, str(scratch), message="4-bit levels", model="bert-int4", temporary=True)
    shutil.rmtree(scratch)
    repack(repo, deltas=False)  # the one delta below is made by hand, as it was then
    delta = add_delta(repo, first, second)
    import fsspec

    memory = fsspec.filesystem("memory")
    if memory.exists("/frozen-origin"):  # a second build in one process starts afresh too
        memory.rm("/frozen-origin", recursive=True)
    add_remote(repo, "origin", "memory://frozen-origin")
    push(repo, "origin", "bert", jobs=1)
    for rel in LEFT_OUT:
        shutil.rmtree(out / rel, ignore_errors=True)
    print(f"versions {first} {second}; delta object {delta}", file=sys.stderr)
    return sums(out)


def sums(root: pathlib.Path) -> dict[str, str]:
    """Every file below root ('/'-separated relative path -> blake3), empty folders left out."""
    import blake3

    found = {}
    for here, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = pathlib.Path(here) / name
            found[path.relative_to(root).as_posix()] = blake3.blake3(path.read_bytes()).hexdigest()
    return found


def main() -> None:
    files = build(OUT)
    SUMS.write_text("".join(f"{digest}  {path}\n" for path, digest in sorted(files.items())))
    total = sum((OUT / p).stat().st_size for p in files)
    print(f"{len(files)} files, {total} bytes in {OUT}; sums in {SUMS}", file=sys.stderr)


if __name__ == "__main__":
    main()
