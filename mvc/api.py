"""The public Python API: open a store, route requests, load weights.

``import mvc`` re-exports these names lazily::

    repo = mvc.open_repo("path/inside/a/store")
    router = mvc.Router(repo, "bert", "prod", poll_interval=5)
    weights = mvc.load("bert@prod", repo=repo)              # {name: numpy array}, memory-mapped
    merged = mvc.load("bert@v2 + sql-lora@v1.3", repo=repo)  # LoRA merged into the base

Everything here is a thin layer over ``mvc.repo``, ``mvc.ops`` and ``mvc.router``; errors are
``MvcError`` subclasses with a message and a hint, as on the command line.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from mvc import _API_NAMES
from mvc.errors import InvalidInput, UsageError
from mvc.errors import MvcError as MvcError  # re-exported
from mvc.ids import ObjectId, short
from mvc.repo import Repo
from mvc.router import Router as Router  # re-exported
from mvc.router import materialise

if TYPE_CHECKING:
    import numpy as np

# One list of public names: the lazy re-exports of ``mvc/__init__.py``.
__all__ = sorted(_API_NAMES)


def open_repo(path: str | None = None, **kwargs: Any) -> Repo:
    """The store holding ``path`` (default: the current folder), found by walking up."""
    return Repo.discover(path, **kwargs)


def init_repo(path: str = ".", **kwargs: Any) -> Repo:
    """Create a store in ``path`` (also keeps it out of an enclosing git work tree)."""
    from mvc.ops.setup import init_store

    init_store(path)
    return Repo(path, **kwargs)


def _repo(repo: Repo | str | None) -> Repo:
    return repo if isinstance(repo, Repo) else open_repo(repo)


def commit(path: str, message: str, *, repo: Repo | str | None = None, **options: Any) -> Any:
    """Record ``path`` as the next version of a model; see ``mvc commit`` for ``options``
    (model, branch, params, metrics, lineage, bind, raw, allow_empty). Returns a CommitResult
    (``.created``, ``.version_id``, ``.to_json()``)."""
    from mvc.ops.commit import commit as do_commit

    return do_commit(_repo(repo), path, message=message, **options)


def resolve(spec: str, *, repo: Repo | str | None = None) -> Any:
    """Resolve a version spec (``bert@^1.2``, ``bert@prod``, ``bert@main~1``) to a Resolved
    (``.model``, ``.version`` — the full id, ``.kind``, ``.name``)."""
    from mvc.ops.specs import resolve as do_resolve

    return do_resolve(_repo(repo), spec)


def log(spec: str, *, repo: Repo | str | None = None, limit: int | None = None) -> list[Any]:
    """Versions newest first along first parents: LogEntry(``.id``, ``.version``)."""
    from mvc.ops.inspect import log as do_log

    return list(do_log(_repo(repo), spec, limit=limit))


def show(spec: str, *, repo: Repo | str | None = None) -> Any:
    """A version's metadata, files (size, blake3) and tensor summaries: VersionDetails."""
    from mvc.ops.inspect import show as do_show

    return do_show(_repo(repo), spec)


def checkout(
    spec: str, *, repo: Repo | str | None = None, to: str | None = None, force: bool = False
) -> Any:
    """Write a version into its working folder (or ``to``); refuses to overwrite changes."""
    from mvc.ops.worktrees import checkout as do_checkout

    return do_checkout(_repo(repo), spec, to=to, force=force)


def iter_file(spec: str, path: str, *, repo: Repo | str | None = None) -> Any:
    """One file of a version, as verified chunks of bytes (constant memory)."""
    from mvc.ops.inspect import cat

    return cat(_repo(repo), spec, path)


def read_file(spec: str, path: str, *, repo: Repo | str | None = None) -> bytes:
    """One (small) file of a version, verified: ``read_file("bert@v1.0.0", "config.json")``."""
    return b"".join(iter_file(spec, path, repo=repo))


def numpy_dtype(dtype: str) -> Any:
    """The numpy dtype a tensor can be memory-mapped as (one table: ``mvc.tensors``)."""
    from mvc.formats.safetensors import DTYPE_BITS
    from mvc.tensors import numpy_dtype as element_dtype

    if DTYPE_BITS.get(dtype, 8) < 8:
        raise UsageError(
            f"tensors of dtype {dtype} are packed below one byte per element; numpy cannot "
            "map them",
            hint="read the file's bytes yourself (mvc cat) or convert the model",
        )
    return element_dtype(dtype)


def read_tensors(path: str, *, mmap: bool = True) -> dict[str, np.ndarray]:
    """Every tensor of one safetensors file; read-only memory maps unless ``mmap`` is False."""
    import numpy as np

    from mvc.formats.safetensors import read_header

    header = read_header(path)
    tensors: dict[str, np.ndarray] = {}
    if not header.tensors:
        return tensors
    raw: Any = np.memmap(path, dtype=np.uint8, mode="r")
    for info in header.tensors:
        dtype = numpy_dtype(info.dtype)
        view = raw[info.start : info.end].view(dtype).reshape(tuple(info.shape))
        tensors[info.name] = view if mmap else np.array(view)
    return tensors


def read_folder(folder: str, *, mmap: bool = True) -> dict[str, np.ndarray]:
    """The tensors of every ``*.safetensors`` file below a folder (sharded models too)."""
    found: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for here, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".safetensors"):
                continue
            path = os.path.join(here, name)
            for tensor, array in read_tensors(path, mmap=mmap).items():
                if tensor in found:
                    raise InvalidInput(
                        f"tensor {tensor!r} is in both {origin[tensor]} and {path}",
                        hint="load the files one by one with mvc.api.read_tensors",
                    )
                found[tensor], origin[tensor] = array, path
    return found


def _resolve_load(repo: Repo, spec: str, adapter: str | None) -> tuple[str, ObjectId, Any]:
    """(model, base version, adapter ref or None) for ``load``'s arguments."""
    from mvc.ops import deploy
    from mvc.ops.specs import parse_spec, resolve

    base_text, adapter_text = deploy.split_target(spec)
    if adapter is not None:
        if adapter_text is not None:
            raise UsageError("name the adapter once: in the spec or with adapter=, not both")
        adapter_text = adapter
    parsed = parse_spec(base_text)
    resolved = resolve(repo, parsed)
    ref = None
    if adapter_text is not None:
        target = deploy.resolve_target(
            repo, parsed.model, f"{parsed.model}@id={resolved.version} + {adapter_text}"
        )
        ref = target.adapter
    elif resolved.kind == "channel" and resolved.name and not parsed.back:
        name, _, label = resolved.name.partition(":")
        ref = deploy.arm_for(repo, parsed.model, name, label or deploy.STABLE).adapter
    return parsed.model, resolved.version, ref


def load(
    spec: str,
    *,
    repo: Repo | str | None = None,
    adapter: str | None = None,
    cache_dir: str | None = None,
    mmap: bool = True,
) -> dict[str, np.ndarray]:
    """A version's safetensors tensors as numpy arrays, memory-mapped from a local cache folder.

    ``spec`` is a version spec (``bert@v1.2.0``, ``bert@prod``), optionally with an adapter:
    ``bert@v2 + sql-lora@v1.3`` (or ``adapter="sql-lora@v1.3"``). A channel whose arm carries an
    adapter loads it too. LoRA updates are merged into the base weights they target
    (W + B·A·alpha/r, float32 accumulation, the base's dtype); those arrays are new, every other
    one stays a read-only memory map.
    """
    if not isinstance(repo, Repo):
        repo = open_repo(repo)
    model, version, adapter_ref = _resolve_load(repo, spec, adapter)
    tensors = read_folder(materialise(repo, model, version, cache_dir), mmap=mmap)
    if adapter_ref is None:
        return tensors
    folder = materialise(repo, adapter_ref.model, adapter_ref.version, cache_dir)
    merge_lora(tensors, folder, f"{adapter_ref.model}@{short(adapter_ref.version)}")
    return tensors


def merge_lora(tensors: dict[str, np.ndarray], adapter_folder: str, what: str) -> None:
    """Merge a PEFT LoRA adapter folder into ``tensors`` in place (the targeted weights only)."""
    import json

    import numpy as np

    from mvc.ops.deploy import lora_pairs

    try:
        with open(os.path.join(adapter_folder, "adapter_config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{what} has no readable adapter_config.json") from exc
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise UsageError(f"{what} is a {peft_type} adapter; only LoRA can be merged on load")
    rank, alpha = config.get("r"), config.get("lora_alpha", config.get("r"))
    if not isinstance(rank, int) or rank <= 0 or not isinstance(alpha, int | float):
        raise InvalidInput(f"{what}: adapter_config.json has no valid r / lora_alpha")
    scale = float(alpha) / (rank**0.5 if config.get("use_rslora") else rank)
    lora = read_folder(adapter_folder)
    shapes = {n: {"shape": list(a.shape)} for n, a in tensors.items()}
    pairs, problems = lora_pairs(shapes, {n: {"shape": list(a.shape)} for n, a in lora.items()})
    if problems:
        raise InvalidInput(f"{what} does not fit the base: " + "; ".join(problems[:5]))
    for pair in pairs:
        weight = tensors[pair.base_name]
        delta = lora[pair.b_name].astype(np.float32) @ lora[pair.a_name].astype(np.float32)
        if delta.shape != weight.shape:
            delta = delta.T  # fan_in_fan_out layouts (GPT-2's Conv1D) store W transposed
        merged = weight.astype(np.float32) + np.float32(scale) * delta
        tensors[pair.base_name] = merged.astype(weight.dtype)
