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
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

from mvc import peft
from mvc._api_names import API_NAMES
from mvc.archives import archived_error, read_archive
from mvc.deployment.records import AdapterRef
from mvc.errors import InvalidInput, UsageError
from mvc.errors import MvcError as MvcError  # re-exported
from mvc.formats.safetensors import DTYPE_BITS, read_header
from mvc.ids import ObjectId, short
from mvc.lastuse import note_use
from mvc.ops import deploy
from mvc.ops.adapters import prepare_merge, read_factors, read_replacement
from mvc.ops.commit import CommitResult as CommitResult  # re-exported: commit's result
from mvc.ops.commit import commit as do_commit
from mvc.ops.inspect import LogEntry as LogEntry  # re-exported: log's entries
from mvc.ops.inspect import VersionDetails as VersionDetails  # re-exported: show's result
from mvc.ops.inspect import cat
from mvc.ops.inspect import log as do_log
from mvc.ops.inspect import show as do_show
from mvc.ops.lifecycle import warn_use
from mvc.ops.setup import init_store
from mvc.ops.worktrees import CheckoutResult as CheckoutResult  # re-exported: checkout's result
from mvc.ops.worktrees import checkout as do_checkout
from mvc.progress import Progress
from mvc.repo import Clock, utc_now
from mvc.repo import Repo as Repo  # re-exported
from mvc.router import Router as Router  # re-exported
from mvc.router import materialise
from mvc.specs import Resolved as Resolved  # re-exported: resolve's result
from mvc.specs import parse_spec
from mvc.specs import resolve as do_resolve
from mvc.tensors import numpy_dtype as element_dtype

if TYPE_CHECKING:
    import numpy as np
    import torch

# One list of public names: the lazy re-exports of ``mvc/__init__.py``.
__all__ = sorted(API_NAMES)


def open_repo(
    path: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    clock: Clock = utc_now,
) -> Repo:
    """The store holding ``path`` (default: the current folder), found by walking up.

    ``env`` replaces ``os.environ`` (``MVC_*`` settings), ``overrides`` are configuration keys
    that win over every file (``{"core.jobs": 4}``), ``clock`` gives the time of new versions."""
    return Repo.discover(path, env=env, overrides=overrides, clock=clock)


def init_repo(
    path: str = ".",
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    clock: Clock = utc_now,
) -> Repo:
    """Create a store in ``path`` (also keeps it out of an enclosing git work tree); the
    keywords are ``open_repo``'s."""
    init_store(path)
    return Repo(path, env=env, overrides=overrides, clock=clock)


def _repo(repo: Repo | str | None) -> Repo:
    return repo if isinstance(repo, Repo) else open_repo(repo)


def commit(
    path: str,
    message: str,
    *,
    repo: Repo | str | None = None,
    model: str | None = None,
    branch: str | None = None,
    params: Mapping[str, object] | None = None,
    metrics: Mapping[str, object] | None = None,
    lineage: Mapping[str, object] | None = None,
    bind: bool = False,
    raw: bool = False,
    follow_symlinks: bool = False,
    allow_empty: bool = False,
    progress: Progress | None = None,
) -> CommitResult:
    """Record ``path`` (a folder or a file) as the next version of a model, with the rules of
    ``mvc commit`` and its options. ``params``, ``metrics`` and ``lineage`` are JSON values.
    ``.created`` is False (and no version is made) when nothing changed; ``.version_id``."""
    return do_commit(
        _repo(repo),
        path,
        message=message,
        model=model,
        branch=branch,
        params=params,
        metrics=metrics,
        lineage=lineage,
        bind=bind,
        raw=raw,
        follow_symlinks=follow_symlinks,
        allow_empty=allow_empty,
        progress=progress,
    )


def resolve(
    spec: str, *, repo: Repo | str | None = None, allow_deprecated: bool = False
) -> Resolved:
    """Resolve a version spec (``bert@^1.2``, ``bert@prod``, ``bert@main~1``) to a Resolved
    (``.model``, ``.version`` — the full id, ``.kind``, ``.name``; for a channel, ``.adapter``
    its arm serves).

    A deprecated version gives a ``VersionDeprecationWarning`` (once per process); past its
    cutoff, ``Deprecated`` unless ``allow_deprecated``."""
    opened = _repo(repo)
    resolved = do_resolve(opened, spec)
    warn_use(opened, resolved.model, resolved.version, allow_deprecated=allow_deprecated)
    return resolved


def log(spec: str, *, repo: Repo | str | None = None, limit: int | None = None) -> list[LogEntry]:
    """Versions newest first along first parents: LogEntry(``.id``, ``.version``)."""
    return list(do_log(_repo(repo), spec, limit=limit))


def show(spec: str, *, repo: Repo | str | None = None) -> VersionDetails:
    """A version's metadata, files (size, blake3) and tensor summaries."""
    return do_show(_repo(repo), spec)


def checkout(
    spec: str,
    *,
    repo: Repo | str | None = None,
    to: str | None = None,
    force: bool = False,
    allow_deprecated: bool = False,
) -> CheckoutResult:
    """Write a version into its working folder (or ``to``); refuses to overwrite changes.
    ``.deprecation`` of the result is set for a deprecated version; past its cutoff,
    ``Deprecated`` unless ``allow_deprecated``."""
    return do_checkout(_repo(repo), spec, to=to, force=force, allow_deprecated=allow_deprecated)


def iter_file(spec: str, path: str, *, repo: Repo | str | None = None) -> Iterator[bytes]:
    """One file of a version, as verified chunks of bytes (constant memory)."""
    return cat(_repo(repo), spec, path)


def read_file(spec: str, path: str, *, repo: Repo | str | None = None) -> bytes:
    """One (small) file of a version, verified: ``read_file("bert@v1.0.0", "config.json")``."""
    return b"".join(iter_file(spec, path, repo=repo))


def numpy_dtype(dtype: str) -> np.dtype[np.generic]:
    """The numpy dtype a tensor can be memory-mapped as (one table: ``mvc.tensors``)."""
    if DTYPE_BITS.get(dtype, 8) < 8:
        raise UsageError(
            f"tensors of dtype {dtype} are packed below one byte per element; numpy cannot "
            "map them",
            hint="read the file's bytes yourself (mvc cat) or convert the model",
        )
    return element_dtype(dtype)


def read_tensors(path: str, *, mmap: bool = True) -> dict[str, np.ndarray]:
    """Every tensor of one safetensors file; read-only memory maps unless ``mmap`` is False."""
    return _read_tensors(path, mmap=mmap, mode="r")


def _read_tensors(path: str, *, mmap: bool, mode: Literal["r", "c"]) -> dict[str, np.ndarray]:
    """``read_tensors``; ``mode="c"`` maps copy-on-write (writable, writes stay in memory)."""
    import numpy as np

    header = read_header(path)
    tensors: dict[str, np.ndarray] = {}
    if not header.tensors:
        return tensors
    raw: Any = np.memmap(path, dtype=np.uint8, mode=mode)
    for info in header.tensors:
        dtype = numpy_dtype(info.dtype)
        view = raw[info.start : info.end].view(dtype).reshape(tuple(info.shape))
        tensors[info.name] = view if mmap else np.array(view)
    return tensors


def read_folder(folder: str, *, mmap: bool = True) -> dict[str, np.ndarray]:
    """The tensors of every ``*.safetensors`` file below a folder (sharded models too)."""
    return _read_folder(folder, mmap=mmap, mode="r")


def _read_folder(folder: str, *, mmap: bool, mode: Literal["r", "c"]) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for here, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".safetensors"):
                continue
            path = os.path.join(here, name)
            for tensor, array in _read_tensors(path, mmap=mmap, mode=mode).items():
                if tensor in found:
                    raise InvalidInput(
                        f"tensor {tensor!r} is in both {origin[tensor]} and {path}",
                        hint="load the files one by one with mvc.api.read_tensors",
                    )
                found[tensor], origin[tensor] = array, path
    return found


def _resolve_load(
    repo: Repo, spec: str, adapter: str | None
) -> tuple[str, ObjectId, AdapterRef | None]:
    """(model, base version, adapter or None) for ``load``'s arguments. A channel's base and
    adapter come from the one record the spec resolved to, even if the channel moves meanwhile."""
    base_text, adapter_text = deploy.split_target(spec)
    if adapter is not None:
        if adapter_text is not None:
            raise UsageError("name the adapter once: in the spec or with adapter=, not both")
        adapter_text = adapter
    parsed = parse_spec(base_text)
    resolved = do_resolve(repo, parsed)
    if adapter_text is not None:
        return (
            parsed.model,
            resolved.version,
            deploy.target_on(repo, parsed.model, resolved.version, adapter_text).adapter,
        )
    return parsed.model, resolved.version, resolved.adapter


@overload
def load(
    spec: str,
    *,
    repo: Repo | str | None = None,
    adapter: str | None = None,
    cache_dir: str | None = None,
    mmap: bool = True,
    allow_deprecated: bool = False,
    framework: Literal["np"] = "np",
) -> dict[str, np.ndarray]: ...


@overload
def load(
    spec: str,
    *,
    repo: Repo | str | None = None,
    adapter: str | None = None,
    cache_dir: str | None = None,
    mmap: bool = True,
    allow_deprecated: bool = False,
    framework: Literal["pt"],
) -> dict[str, torch.Tensor]: ...


def load(
    spec: str,
    *,
    repo: Repo | str | None = None,
    adapter: str | None = None,
    cache_dir: str | None = None,
    mmap: bool = True,
    allow_deprecated: bool = False,
    framework: Literal["np", "pt"] = "np",
) -> dict[str, np.ndarray] | dict[str, torch.Tensor]:
    """A version's safetensors tensors as numpy arrays, memory-mapped from a local cache folder.

    ``spec`` is a version spec (``bert@v1.2.0``, ``bert@prod``), optionally with an adapter:
    ``bert@v2 + sql-lora@v1.3`` (or ``adapter="sql-lora@v1.3"``). A channel whose arm carries an
    adapter loads it too. The adapter is merged exactly as ``mvc merge-adapter`` and peft's
    ``merge_and_unload`` merge it (W + B·A·scale per module, honouring ``rank_pattern``,
    ``alpha_pattern``, ``use_rslora`` and ``fan_in_fan_out``; float32 accumulation, the base's
    dtype) and ``modules_to_save`` tensors replace theirs; those arrays are new, every other one
    stays a read-only memory map. DoRA and other methods mvc cannot merge raise
    ``mvc.peft.UnsupportedAdapter``.

    A deprecated version (base or adapter) gives a ``VersionDeprecationWarning`` once per
    process; past its cutoff, ``mvc.errors.Deprecated`` unless ``allow_deprecated``.

    ``framework="pt"`` returns torch tensors instead (torch is then needed), every dtype torch
    has included: BF16 becomes ``torch.bfloat16`` and the F8 types torch's float8 dtypes, bit
    for bit. They share memory with a copy-on-write map of the cache (writable; writes stay in
    this process), so nothing is read until it is used.
    """
    if framework not in ("np", "pt"):
        raise UsageError(
            f"unknown framework {framework!r}", hint='use "np" (numpy) or "pt" (torch)'
        )
    if not isinstance(repo, Repo):
        repo = open_repo(repo)
    model, version, adapter_ref = _resolve_load(repo, spec, adapter)
    warn_use(repo, model, version, allow_deprecated=allow_deprecated)
    if adapter_ref is not None:
        warn_use(repo, adapter_ref.model, adapter_ref.version, allow_deprecated=allow_deprecated)
    for oid in [version] + ([adapter_ref.version] if adapter_ref else []):
        archived = read_archive(repo.storage, oid)  # even when a cache folder still has it
        if archived is not None:
            raise archived_error(archived)
    folder = materialise(repo, model, version, cache_dir)
    tensors = _read_folder(folder, mmap=mmap, mode="c" if framework == "pt" else "r")
    note_use(repo, model, version)
    if adapter_ref is not None:
        note_use(repo, adapter_ref.model, adapter_ref.version)
        _merge_adapter(repo, tensors, version, adapter_ref, f"{model}@{short(version)}")
    return _as_torch(tensors) if framework == "pt" else tensors


# ml_dtypes' types -> (torch dtype name, the same-width integer dtype to view the bits through)
_TORCH_VIEWS = {
    "bfloat16": ("bfloat16", "<i2"),
    "float8_e4m3fn": ("float8_e4m3fn", "u1"),
    "float8_e5m2": ("float8_e5m2", "u1"),
    "float8_e8m0fnu": ("float8_e8m0fnu", "u1"),
    "float8_e4m3fnuz": ("float8_e4m3fnuz", "u1"),
    "float8_e5m2fnuz": ("float8_e5m2fnuz", "u1"),
}


def _as_torch(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """numpy arrays as torch tensors sharing their memory; ``ml_dtypes`` types (bf16, float8)
    become torch's own dtypes bit for bit, which ``torch.from_numpy`` alone refuses."""
    try:
        import torch
    except ImportError as exc:
        raise UsageError(
            'framework="pt" needs torch', hint="install torch, or load numpy arrays (the default)"
        ) from exc
    import warnings

    out: dict[str, torch.Tensor] = {}
    for name, array in arrays.items():
        view = _TORCH_VIEWS.get(array.dtype.name)
        if view is None and array.dtype.kind == "V":
            raise UsageError(
                f"tensor {name!r} has dtype {array.dtype.name}, which torch does not have",
                hint='load it as numpy (framework="np")',
            )
        with warnings.catch_warnings():
            # A read-only array (mmap=True without "c") is never handed out here; this notice
            # is about arrays a caller passes in, whose writability is theirs to know.
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            if view is None:
                out[name] = torch.from_numpy(array)
            else:
                bits = torch.from_numpy(array.view(view[1]))
                out[name] = bits.view(getattr(torch, view[0]))
    return out


def _merge_adapter(
    repo: Repo,
    tensors: dict[str, np.ndarray],
    base: ObjectId,
    adapter_ref: AdapterRef,
    base_label: str,
) -> None:
    """Merge an adapter version into ``tensors`` in place (the targeted weights only), with the
    same checks, refusals and arithmetic as ``mvc merge-adapter`` (``mvc.peft``)."""
    adapter_label = f"{adapter_ref.model}@{short(adapter_ref.version)}"
    prepared = prepare_merge(repo, base, adapter_ref.version, base_label, adapter_label)
    for name, plan in prepared.plans.items():
        a, b = read_factors(prepared, plan)
        tensors[name] = peft.merge_array(plan, tensors[name], a, b)
    for name in prepared.replaced:
        tensors[name] = read_replacement(prepared, name, tensors[name].dtype)
