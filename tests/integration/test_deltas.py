"""Repack stores fine-tuned chunks as deltas against their parent's; every version stays readable.

A fine-tune here is the base's tensors with their low bits perturbed (a relative change of
about 1e-4, what a few small training steps do), so XOR against the parent's chunk leaves
mostly zero high bytes: the delta is far smaller than the chunk's own encoding.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from mvc import codec
from mvc.ids import ObjectId
from mvc.repo import Repo
from mvc.store import object_key


def _tensors(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "embed.weight": rng.normal(0, 0.02, (512, 256)).astype(np.float32),
        "layer.0.weight": rng.normal(0, 0.02, (256, 256)).astype(np.float32),
        "layer.0.bias": np.zeros(256, np.float32),
        "position_ids": np.arange(128, dtype=np.int64),
    }


def _tuned(tensors: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1000 + seed)
    out = {}
    for name, value in tensors.items():
        if value.dtype == np.float32:
            noise = rng.normal(0, 1e-4, value.shape).astype(np.float32)
            value = (value * (1 + noise) + noise * 1e-4).astype(np.float32)
        out[name] = value
    return out


def _write(folder: pathlib.Path, tensors: dict[str, np.ndarray], note: str = "") -> None:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"hidden": 256, "note": note}) + "\n")


def _commit(cli, folder: pathlib.Path, *args: str) -> str:
    return cli("commit", str(folder), "-m", folder.name, *args, "--json").json()["version"]


def _files(cli, spec: str, tmp_path: pathlib.Path) -> dict[str, bytes]:
    target = tmp_path / "out" / spec.replace("@", "_")
    cli("checkout", spec, "--to", str(target))
    return {p.name: p.read_bytes() for p in sorted(target.iterdir()) if p.is_file()}


def _header(repo: Repo, oid: str) -> dict:
    return repo.objects.read_header(oid)


def _chunk_ids(repo: Repo, version: str) -> list[ObjectId]:
    tree = repo.objects.get_tree(repo.objects.get_version(version).tree)
    manifest = repo.objects.manifest_of(tree.files["model.safetensors"])
    return [c.id for c in manifest.chunks]


def _deltas(repo: Repo) -> dict[ObjectId, tuple[str, int]]:
    found = {}
    for oid in repo.objects.iter_ids():
        base = codec.header_delta_base(repo.objects.read_header(oid))
        if base is not None:
            found[oid] = base
    return found


@pytest.fixture
def family(store, cli, tmp_path):
    """``bert``: a base and two fine-tunes on ``main``, their folders' bytes kept."""
    base = _tensors(0)
    ids, files = [], []
    for n, tensors in enumerate([base, _tuned(base, 1), _tuned(_tuned(base, 1), 2)]):
        folder = tmp_path / "work" / "models" / "bert"
        _write(folder, tensors, note=str(n))
        ids.append(_commit(cli, folder, "--model", "bert"))
        files.append((folder / "model.safetensors").read_bytes())
    return ids, files


def test_repack_stores_fine_tunes_as_deltas_of_their_parents(store, cli, family, tmp_path):
    ids, files = family
    before = sum(store.storage.size(object_key(o)) for o in store.objects.iter_ids())
    result = cli("repack", "--json").json()
    assert result["deltas"] >= 4  # two float tensors in each of two fine-tunes
    repo = Repo(str(store.root))
    deltas = _deltas(repo)
    # Each fine-tune's changed float chunks are deltas against the same tensor of its parent.
    for child, parent in ((ids[1], ids[0]), (ids[2], ids[1])):
        mine, theirs = _chunk_ids(repo, child), _chunk_ids(repo, parent)
        assert {deltas[c][0] for c in mine if c in deltas} <= set(theirs)
        assert sum(c in deltas for c in mine) == 2
    assert not any(c in deltas for c in _chunk_ids(repo, ids[0]))  # the base stays whole
    after = sum(store.storage.size(object_key(o)) for o in store.objects.iter_ids())
    assert after < 0.75 * before
    # Ids never change; every version reads back byte-identical, and fsck agrees.
    for n, version in enumerate(ids):
        assert _files(cli, f"bert@{version}", tmp_path)["model.safetensors"] == files[n]
    assert cli("fsck", "--json").json()["ok"]
    again = cli("repack", "--json").json()
    assert again["deltas"] == 0 and again["compressed"] == 0  # nothing left to do


def test_a_delta_is_kept_only_where_it_is_smaller(store, cli, tmp_path):
    """A "fine-tune" that is unrelated noise: the XOR is noise too, so the chunk stays whole."""
    folder = tmp_path / "work" / "models" / "bert"
    _write(folder, _tensors(0))
    _commit(cli, folder, "--model", "bert")
    _write(folder, _tensors(1))
    _commit(cli, folder, "--model", "bert")
    assert cli("repack", "--json").json()["deltas"] == 0
    assert not _deltas(Repo(str(store.root)))


def test_chains_are_bounded_and_every_version_reads_back(store, cli, tmp_path):
    folder = tmp_path / "work" / "models" / "bert"
    tensors = _tensors(0)
    ids, files = [], []
    for n in range(11):
        _write(folder, tensors, note=str(n))
        ids.append(_commit(cli, folder, "--model", "bert"))
        files.append((folder / "model.safetensors").read_bytes())
        tensors = _tuned(tensors, n)
    cli("repack")
    repo = Repo(str(store.root))
    deltas = _deltas(repo)
    for oid, (_base, depth) in deltas.items():
        chain, step = 0, oid
        while step in deltas:
            step = ObjectId(deltas[step][0])
            chain += 1
        assert chain == depth <= codec.MAX_DELTA_DEPTH
    assert max(d for _b, d in deltas.values()) == codec.MAX_DELTA_DEPTH
    # The ninth fine-tune starts a new chain: its chunks are whole again.
    assert not any(c in deltas for c in _chunk_ids(repo, ids[9]))
    assert any(c in deltas for c in _chunk_ids(repo, ids[10]))
    for n, version in enumerate(ids):
        assert _files(cli, f"bert@{version}", tmp_path)["model.safetensors"] == files[n]


def test_a_reverted_tensor_makes_no_cycle(store, cli, tmp_path):
    """v3 holds v1's chunks again: v2's chunks are deltas against v1's, so v3's (the same
    chunks as v1's) must not become deltas against v2's."""
    folder = tmp_path / "work" / "models" / "bert"
    base = _tensors(0)
    ids = []
    for n, tensors in enumerate([base, _tuned(base, 1), base]):
        _write(folder, tensors, note=str(n))
        ids.append(_commit(cli, folder, "--model", "bert"))
    cli("repack")
    assert cli("fsck", "--json").json()["ok"]
    for version in ids:
        _files(cli, f"bert@{version}", tmp_path)


def test_a_model_with_a_base_is_stored_against_the_base(store, cli, tmp_path):
    """A merged or fully fine-tuned model committed with --base (another model) has no parent
    of its own: its tensors are paired with the base's."""
    _write(tmp_path / "work" / "models" / "base", _tensors(7))
    _commit(cli, tmp_path / "work" / "models" / "base", "--model", "base")
    scratch = tmp_path / "work" / "scratch"
    _write(scratch, _tensors(0))
    base = _commit(cli, scratch, "--model", "base", "--branch", "tmp")
    tuned = tmp_path / "work" / "models" / "merged"
    _write(tuned, _tuned(_tensors(0), 5))
    merged = _commit(cli, tuned, "--model", "merged", "--base", f"base@{base}")
    assert cli("repack", "--json").json()["deltas"] == 2
    repo = Repo(str(store.root))
    deltas = _deltas(repo)
    assert {deltas[c][0] for c in _chunk_ids(repo, merged) if c in deltas} <= set(
        _chunk_ids(repo, base)
    )
    # gc keeps the base's chunks a live delta needs, even with the base model gone.
    cli("branch", "base", "-D", "tmp")
    cli("gc", "--grace", "0s")
    wanted = (tuned / "model.safetensors").read_bytes()
    assert _files(cli, f"merged@{merged}", tmp_path)["model.safetensors"] == wanted
    assert cli("fsck", "--json").json()["ok"]


def test_gc_keeps_a_base_that_a_repack_made_needed_after_gc_marked(
    store, cli, tmp_path, monkeypatch
):
    """A repack between gc's mark (no lock) and its sweep (exclusive lock) can turn a chunk gc
    already marked into a delta against an unreachable chunk: the sweep keeps that base."""
    from mvc.ops import maintenance

    folder = tmp_path / "work" / "models" / "bert"
    _write(folder, _tensors(0))
    kept = _commit(cli, folder, "--model", "bert")
    scratch = tmp_path / "work" / "scratch"
    _write(scratch, _tuned(_tensors(0), 3))
    gone = _commit(cli, scratch, "--model", "bert", "--branch", "tmp")
    cli("branch", "bert", "-D", "tmp")
    repo = Repo(str(store.root))
    live = _chunk_ids(repo, kept)
    dead = _chunk_ids(repo, gone)
    chunk, base = next((a, b) for a, b in zip(live[1:], dead[1:], strict=True) if a != b)
    real = repo.collecting_garbage

    def repack_then_collect():
        data = repo.objects.get_bytes(chunk)
        parts = codec.encode_delta(
            data, base, repo.objects.get_bytes(base), base_depth=0, elem_width=4
        )
        assert parts is not None
        repo.objects.replace_encoding(chunk, parts)
        return real()

    monkeypatch.setattr(repo, "collecting_garbage", repack_then_collect)
    result = maintenance.gc(repo, grace=0.0, repack_objects=False)
    assert base not in result.deleted and result.deleted
    assert hashed(repo, chunk)


def hashed(repo: Repo, oid: ObjectId) -> bool:
    return repo.objects.get_bytes(oid) is not None


def test_fsck_names_every_version_a_corrupt_base_takes_down(store, cli, family, tmp_path):
    """Damage one chunk of the base version that both fine-tunes' chunks are deltas against
    (directly and through the first fine-tune): fsck reports the base as corrupt, the deltas
    as needing it, and names all three versions; --quarantine moves only the damaged object
    aside, never the good deltas stored on it."""
    ids, _files = family
    cli("repack")
    repo = Repo(str(store.root))
    deltas = _deltas(repo)
    child = next(c for c in _chunk_ids(repo, ids[2]) if c in deltas)
    middle = ObjectId(deltas[child][0])
    base = ObjectId(deltas[middle][0])
    assert base in _chunk_ids(repo, ids[0])
    path = pathlib.Path(repo.storage.local_path(object_key(base)))
    damaged = bytearray(path.read_bytes())
    damaged[-100] ^= 0xFF
    path.write_bytes(bytes(damaged))
    report = cli("fsck", "--json", expect=12).json()
    kinds = {(p["kind"], p["object"]) for p in report["problems"]}
    assert ("corrupt", base) in kinds
    assert ("delta", middle) in kinds and ("delta", child) in kinds
    assert {p["object"] for p in report["broken_versions"]} == set(ids)
    done = cli("fsck", "--quarantine", expect=12)
    for version in ids:
        assert version in done.stdout
    assert "3 version(s) cannot be read" in done.stderr
    assert not path.exists() and repo.objects.has(middle) and repo.objects.has(child)


# --- remotes: the compact form travels, with the bases it needs ----------------------------------


def _data_reach(repo: Repo, version: str) -> set[ObjectId]:
    from mvc import graph

    return graph.reachable(repo.objects, [ObjectId(version)], graph.DATA).reached


def test_push_sends_deltas_and_a_pull_of_one_version_fetches_its_bases(
    store, cli, family, tmp_path
):
    ids, files = family
    cli("tag", "bert", "v1.2.0", ids[2])
    cli("repack")
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", f"file://{remote}")
    cli("push", "origin", "bert")
    from mvc.storage.local import LocalStorage
    from mvc.store import ObjectStore

    remote_objects = ObjectStore(LocalStorage(str(remote)))  # the remote is a bare store
    local = Repo(str(store.root))
    for oid in _deltas(local):  # the remote holds the compact form, byte for byte
        assert remote_objects.read_stored(oid) == local.objects.read_stored(oid)

    fresh = tmp_path / "fresh"
    cli("init", fresh)
    cli("-C", fresh, "remote", "add", "origin", f"file://{remote}")
    cli("-C", fresh, "pull", "origin", "bert@v1.2.0")
    pulled = Repo(str(fresh))
    chunks = {
        o for o in pulled.objects.iter_ids() if not codec.is_meta(pulled.objects.read_stored(o))
    }
    # The newest fine-tune's chunks and the bases of their chains (in both older versions);
    # of the older versions' other chunks only what a fetch brings (safetensors headers and
    # small files: their history is metadata), no tensor data.
    needed = {
        o for o in _data_reach(local, ids[2]) if not codec.is_meta(local.objects.read_stored(o))
    }
    assert needed <= chunks
    described = set()
    for version in ids[:2]:
        tree = local.objects.get_tree(local.objects.get_version(version).tree)
        for path, entry in tree.files.items():
            manifest = local.objects.manifest_of(entry)
            described |= {c.id for c in manifest.chunks[: 1 if path.endswith("tensors") else None]}
    assert chunks - needed <= described
    bases = {ObjectId(b) for b, _d in _deltas(local).values()}
    assert needed & bases & set(_chunk_ids(local, ids[0]))  # bases came from the base version
    assert set(_chunk_ids(local, ids[0])) - chunks  # some of the base's chunks stayed behind
    out = tmp_path / "fresh-out"
    cli("-C", fresh, "checkout", f"bert@{ids[2]}", "--to", out)
    assert (out / "model.safetensors").read_bytes() == files[2]
    assert cli("-C", fresh, "fsck", "--json").json()["ok"]


def test_a_remote_holding_deltas_without_their_bases_is_refused(store, cli, family, tmp_path):
    ids, _files = family
    cli("tag", "bert", "v1.1.0", ids[1])
    cli("repack")
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", f"file://{remote}")
    cli("push", "origin", "bert")
    local = Repo(str(store.root))
    delta, (base, _depth) = next(
        (c, b) for c, b in _deltas(local).items() if c in _chunk_ids(local, ids[1])
    )
    (remote / "objects" / base[:2] / base[2:]).unlink()
    fresh = tmp_path / "fresh"
    cli("init", fresh)
    cli("-C", fresh, "remote", "add", "origin", f"file://{remote}")
    done = cli("-C", fresh, "pull", "origin", "bert@v1.1.0", expect=1)
    assert f"object {base[:12]}" in done.stderr and f"delta {delta[:12]}" in done.stderr
    assert "missing from remote origin" in done.stderr
    pulled = Repo(str(fresh))
    assert not pulled.objects.has(ObjectId(delta))  # the delta never arrived without its base
    assert pulled.refs.list_refs() == [] or all(
        pulled.refs.get(r) != ids[1] for r in pulled.refs.list_refs()
    )


def test_deltas_round_trip_through_s3(store, cli, family, tmp_path, s3_url, s3_client):
    """moto's S3 server: the pushed deltas are the local envelopes byte for byte, and a clone
    from S3 reads every version back."""
    ids, files = family
    cli("repack")
    endpoint = f"endpoint_url={s3_url.options['endpoint_url']}"
    cli("remote", "add", "origin", s3_url.url, "-o", endpoint)
    cli("push", "origin", "bert")
    local = Repo(str(store.root))
    deltas = _deltas(local)
    assert deltas
    for oid in deltas:
        key = f"store/{object_key(oid)}"
        body = s3_client.get_object(Bucket=s3_url.bucket, Key=key)["Body"].read()
        assert body == local.objects.read_stored(oid)
    clone = tmp_path / "clone"
    cli("clone", s3_url.url, clone, "-o", endpoint)
    for n, version in enumerate(ids):
        out = tmp_path / f"s3-out-{n}"
        cli("-C", clone, "checkout", f"bert@{version}", "--to", out)
        assert (out / "model.safetensors").read_bytes() == files[n]
