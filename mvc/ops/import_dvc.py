"""``mvc import dvc``: commit a DVC-tracked model as a version, read from DVC's own cache.

The target is a ``.dvc`` file, a path a ``.dvc`` file tracks (``models/bert`` for
``models/bert.dvc``), or an output of a ``dvc.lock`` stage. Each file is read from the DVC cache
(not the workspace, which may have been edited since) and its md5 checked against what DVC
recorded before anything is committed; the version's lineage names the DVC file, the md5, and
the git commit that pinned it. ``rev`` imports what a git revision pinned (the DVC file as of
that commit; its objects must still be in the cache). DVC itself is not needed.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

from mvc.errors import InvalidInput, NotFound, UsageError
from mvc.formats.dvc import Md5Check, Out, cache_keys, parse_listing, parse_outs, stage_outs
from mvc.ops.commit import commit
from mvc.ops.imported import ImportResult
from mvc.progress import Progress
from mvc.repo import Repo
from mvc.yamltext import load_yaml

_BLOCK = 1 << 20


@dataclass(frozen=True)
class _Located:
    dvc_root: str  # the folder holding .dvc/
    file: str  # the .dvc file or dvc.lock, absolute
    out: Out
    stage: str | None  # the dvc.lock stage, if any
    text: str  # the DVC file's text (at rev, if given)
    stage_doc: dict[str, Any]  # params and deps of the stage (dvc.lock), else {}


def import_dvc(
    repo: Repo,
    target: str,
    *,
    model: str | None = None,
    branch: str | None = None,
    message: str | None = None,
    rev: str | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    located = _locate(os.path.abspath(target), rev)
    cache = _cache_dir(located.dvc_root)
    git = _git_pin(located.dvc_root, located.file, rev)
    out = located.out
    name = model or os.path.basename(out.path.rstrip("/")).split(".", 1)[0]
    with tempfile.TemporaryDirectory(prefix="mvc-import-dvc-") as staging:
        folder = os.path.join(staging, "model")
        os.mkdir(folder)
        files = _materialise(cache, out, folder, progress)
        lineage: dict[str, Any] = {
            "dvc": {
                "file": os.path.relpath(located.file, located.dvc_root).replace(os.sep, "/"),
                "path": out.path,
                "md5": out.md5,
                **({"stage": located.stage} if located.stage else {}),
                **git,
            }
        }
        datasets = _deps_as_datasets(located.stage_doc)
        if datasets:
            lineage["datasets"] = datasets
        params = _flat_params(located.stage_doc)
        where = f"{lineage['dvc']['file']}" + (f" at {rev}" if rev else "")
        result = commit(
            repo,
            folder if out.is_dir else os.path.join(folder, files[0]),
            message=message or f"import {out.path} from DVC ({where})",
            model=name,
            branch=branch,
            params=params,
            lineage=lineage,
            temporary=True,
            allow_empty=True,
            progress=progress,
        )
    return ImportResult("dvc", target, result, {**lineage["dvc"], "files": len(files)})


# --- finding the DVC file --------------------------------------------------------------------------


def _locate(target: str, rev: str | None) -> _Located:
    if target.endswith(".dvc") and (os.path.isfile(target) or rev):
        return _from_dvc_file(target, rev)
    if os.path.isfile(target + ".dvc"):
        return _from_dvc_file(target + ".dvc", rev)
    if os.path.basename(target) == "dvc.lock":
        return _from_lock(target, None, rev)
    root = _dvc_root(os.path.dirname(target) if not os.path.isdir(target) else target)
    lock = os.path.join(root, "dvc.lock")
    if os.path.isfile(lock):
        rel = os.path.relpath(target, root).replace(os.sep, "/")
        return _from_lock(lock, rel, rev)
    raise NotFound(
        f"{target} is not tracked by DVC (no {os.path.basename(target)}.dvc, no dvc.lock output)",
        hint="name the .dvc file, a path `dvc add` tracks, or an output of a dvc.lock stage",
    )


def _from_dvc_file(path: str, rev: str | None) -> _Located:
    root = _dvc_root(os.path.dirname(path))
    text = _read(root, path, rev)
    outs = parse_outs(text, _shown(root, path))
    if len(outs) != 1:
        raise UsageError(f"{path} tracks {len(outs)} outputs; mvc imports one model at a time")
    base = os.path.relpath(os.path.dirname(path), root).replace(os.sep, "/")
    out = outs[0]
    full = out.path if base in ("", ".") else f"{base}/{out.path}"
    return _Located(root, path, _with_path(out, full), None, text, {})


def _from_lock(lock: str, wanted: str | None, rev: str | None) -> _Located:
    root = os.path.dirname(lock)
    text = _read(root, lock, rev)
    stages = stage_outs(text, _shown(root, lock))
    matches = [
        (stage, out)
        for stage, outs in stages.items()
        for out in outs
        if wanted is None or out.path.rstrip("/") == wanted.rstrip("/")
    ]
    if wanted is None and len(matches) != 1:
        listed = ", ".join(f"{out.path} ({stage})" for stage, out in matches) or "none"
        raise UsageError(
            f"{lock} has {len(matches)} outputs: {listed}",
            hint="name the output path: mvc import dvc PATH",
        )
    if not matches:
        raise NotFound(
            f"{wanted} is not an output of any stage in {lock}",
            hint="outputs: " + ", ".join(o.path for outs in stages.values() for o in outs),
        )
    stage, out = matches[0]
    doc = load_yaml(text, aliases=False).value["stages"][stage]
    return _Located(root, lock, out, stage, text, doc if isinstance(doc, dict) else {})


def _with_path(out: Out, path: str) -> Out:
    return Out(path, out.md5, out.size, out.nfiles, out.legacy)


def _dvc_root(start: str) -> str:
    folder = os.path.abspath(start)
    while True:
        if os.path.isdir(os.path.join(folder, ".dvc")):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            raise NotFound(
                f"no DVC repository at or above {start} (no .dvc/ folder)",
                hint="run mvc import dvc inside the DVC project",
            )
        folder = parent


def _read(root: str, path: str, rev: str | None) -> str:
    if rev is None:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    top = _git(root, "rev-parse", "--show-toplevel")
    rel = os.path.relpath(path, top).replace(os.sep, "/")
    try:
        return _git(root, "show", f"{rev}:{rel}", strip=False)
    except _GitFailed as exc:
        raise NotFound(f"{rel} does not exist at git revision {rev!r}: {exc}") from exc


def _shown(root: str, path: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def _cache_dir(root: str) -> str:
    """The cache folder: ``.dvc/cache`` unless ``.dvc/config`` or ``config.local`` moves it."""
    parser = configparser.ConfigParser()
    parser.read([os.path.join(root, ".dvc", n) for n in ("config", "config.local")])
    configured = parser.get("cache", "dir", fallback=None)
    if configured is None:
        for section in parser.sections():  # DVC writes `[cache]`; some files quote it
            if section.strip("'\" ") == "cache" and parser.has_option(section, "dir"):
                configured = parser.get(section, "dir")
    if not configured:
        return os.path.join(root, ".dvc", "cache")
    return os.path.normpath(os.path.join(root, ".dvc", configured))


# --- reading and checking the cache --------------------------------------------------------------


def _cache_object(cache: str, md5: str) -> str:
    for key in cache_keys(md5):
        path = os.path.join(cache, *key.split("/"))
        if os.path.isfile(path):
            return path
    raise NotFound(
        f"DVC object {md5} is not in the cache at {cache}",
        hint="fetch it first: dvc pull (or dvc fetch) for this output, then import again",
    )


def _materialise(cache: str, out: Out, folder: str, progress: Progress | None) -> list[str]:
    """Copy the output's files from the cache into ``folder``, each md5 checked."""
    if not out.is_dir:
        name = os.path.basename(out.path.rstrip("/"))
        _copy_checked(_cache_object(cache, out.md5), out.md5, out.legacy, folder, name)
        return [name]
    listing_path = _cache_object(cache, out.md5)
    with open(listing_path, "rb") as handle:
        data = handle.read()
    check = Md5Check(legacy=False)
    check.update(data)
    if not check.matches(out.md5.removesuffix(".dir")):
        raise InvalidInput(
            f"DVC folder listing {out.md5} in {cache} does not match its md5 (damaged cache)",
            hint="dvc fetch --force, or dvc add the folder again",
        )
    entries = parse_listing(data, listing_path)
    if out.nfiles is not None and out.nfiles != len(entries):
        raise InvalidInput(
            f"{out.path}: DVC says {out.nfiles} files, its listing has {len(entries)}"
        )
    for entry in entries:
        _copy_checked(_cache_object(cache, entry.md5), entry.md5, out.legacy, folder, entry.relpath)
    return [entry.relpath for entry in entries]


def _copy_checked(source: str, md5: str, legacy: bool, folder: str, rel: str) -> None:
    target = os.path.join(folder, *rel.split("/"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    check = Md5Check(legacy)
    with open(source, "rb") as src, open(target, "xb") as dst:
        while block := src.read(_BLOCK):
            check.update(block)
            dst.write(block)
    if not check.matches(md5):
        raise InvalidInput(
            f"DVC cache object for {rel} ({source}) does not match its md5 {md5} (damaged cache)",
            hint="dvc fetch --force for this output, then import again; nothing was committed",
        )
    shutil.copymode(source, target)


# --- what DVC knows besides the bytes ------------------------------------------------------------


class _GitFailed(Exception):
    pass


def _git(cwd: str, *args: str, strip: bool = True) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _GitFailed(str(exc)) from exc
    if done.returncode != 0:
        raise _GitFailed(done.stderr.strip() or f"git {args[0]} failed")
    return done.stdout.strip() if strip else done.stdout


def _git_pin(root: str, path: str, rev: str | None) -> dict[str, Any]:
    """The git commit that pinned the DVC file (and whether the file changed since)."""
    try:
        pinned = _git(root, "log", "-1", "--format=%H", rev or "HEAD", "--", path)
    except _GitFailed:
        return {"git_commit": None}
    if not pinned:
        return {"git_commit": None, "uncommitted": True}
    facts: dict[str, Any] = {"git_commit": pinned}
    if rev is None:
        try:
            changed = _git(root, "status", "--porcelain", "--", path)
        except _GitFailed:
            changed = ""
        if changed:
            facts["uncommitted"] = True  # the file differs from what that commit pinned
    return facts


def _deps_as_datasets(stage: dict[str, Any]) -> list[dict[str, Any]]:
    """A stage's dependencies as lineage datasets (md5 as DVC recorded it; not re-hashed)."""
    entries = []
    for dep in stage.get("deps") or []:
        if not isinstance(dep, dict) or not isinstance(dep.get("path"), str):
            continue
        md5 = dep.get("md5")
        entries.append(
            {
                "name": dep["path"],
                "uri": dep["path"],
                "hash": f"md5:{md5}" if isinstance(md5, str) else None,
                "hashed": False,
            }
        )
    return entries


def _flat_params(stage: dict[str, Any]) -> dict[str, object]:
    """``params: {params.yaml: {lr: 0.1}}`` -> ``{"lr": 0.1}`` (``file:key`` when two files
    share a key)."""
    files = stage.get("params") or {}
    if not isinstance(files, dict):
        return {}
    counts: dict[str, int] = {}
    for values in files.values():
        for key in values if isinstance(values, dict) else {}:
            counts[str(key)] = counts.get(str(key), 0) + 1
    params: dict[str, object] = {}
    for name, values in files.items():
        for key, value in (values if isinstance(values, dict) else {}).items():
            params[str(key) if counts[str(key)] == 1 else f"{name}:{key}"] = value
    return params
