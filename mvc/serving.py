"""Serving several versions from one process: a pool of loaded versions, and one base model
with many LoRA adapters whose adapter is picked per request.

- ``VersionPool(repo, "bert", load)`` holds each version it is asked for loaded once, side by
  side (``pool.get("v1.2.0")`` and ``pool.get("prod:canary")`` together): ``load`` gets the
  version's local folder (``mvc.router.materialise``) and returns whatever the serving code
  uses (a transformers model, an ONNX session…). A version is named by a REV, a spec, an arm
  or a ``RouteDecision``; it is loaded at most once however many threads ask at once.
- ``AdapterPool(router, load_base)`` keeps, for each base version a channel serves, one real
  ``transformers`` model wrapped in a ``peft.PeftModel``, with every adapter of the channel's
  arms loaded into it (``load_adapter``); ``with pool.use(decision) as model:`` switches to the
  decision's adapter (``set_adapter``; an arm without an adapter runs the base with adapters
  disabled) without reloading the base. ``sync()`` after a channel move loads the new arms'
  adapters (and, with ``prune=True``, deletes those no arm serves any more); ``use`` also loads
  an adapter it has not seen, so a decision of a newer record is always served right.

Switching mutates the shared model, so ``use`` holds that base's lock for the request: requests
on one base run one at a time (as a single-GPU server would); different bases run in parallel.
peft and torch are imported only by ``AdapterPool``, when it loads an adapter.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Generic, Protocol, TypeVar

from mvc.deployment.records import Arm, Target
from mvc.errors import UsageError
from mvc.ids import ObjectId
from mvc.repo import Repo
from mvc.router import RouteDecision, Router, materialise
from mvc.specs import parse_spec, resolve

T = TypeVar("T")
B = TypeVar("B")


class VersionPool(Generic[T]):
    """Versions of one model loaded side by side, each loaded once. Safe to share between threads."""

    def __init__(
        self,
        repo: Repo | str,
        model: str,
        load: Callable[[str], T],
        *,
        cache_dir: str | None = None,
    ) -> None:
        self.repo = repo if isinstance(repo, Repo) else Repo.discover(repo)
        self.model = model
        self._load = load
        self.cache_dir = cache_dir
        self._lock = threading.Lock()
        self._loading: dict[ObjectId, threading.Lock] = {}
        self._loaded: dict[ObjectId, T] = {}

    def version_of(self, which: str | Arm | RouteDecision) -> ObjectId:
        """The version id a REV (``v1.2.0``, ``^1.2``, ``prod:canary``), a spec of this model,
        an arm or a route decision names."""
        if isinstance(which, RouteDecision):
            return which.version
        if isinstance(which, Arm):
            return which.version
        spec = which if "@" in which else f"{self.model}@{which}"
        if parse_spec(spec).model != self.model:
            raise UsageError(
                f"{which!r} is not a version of {self.model!r}",
                hint=f"name a REV of {self.model} (v1.2.0, ^1.2, prod:canary)",
            )
        return resolve(self.repo, spec).version

    def get(self, which: str | Arm | RouteDecision) -> T:
        """The loaded version (loaded now if it is not yet)."""
        version = self.version_of(which)
        with self._lock:
            if version in self._loaded:
                return self._loaded[version]
            gate = self._loading.setdefault(version, threading.Lock())
        with gate:  # one load per version; others wait for it
            with self._lock:
                if version in self._loaded:
                    return self._loaded[version]
            value = self._load(materialise(self.repo, self.model, version, self.cache_dir))
            with self._lock:
                self._loaded[version] = value
                self._loading.pop(version, None)
            return value

    @property
    def loaded(self) -> dict[ObjectId, T]:
        with self._lock:
            return dict(self._loaded)

    def evict(self, which: str | Arm | RouteDecision) -> bool:
        """Drop a loaded version (the caller's references keep it alive); True if it was held."""
        version = self.version_of(which)
        with self._lock:
            return self._loaded.pop(version, None) is not None

    def keep_only(self, router: Router) -> list[ObjectId]:
        """Drop every version the channel's arms do not serve now; the ids dropped."""
        serving = {a.version for a in router.arms}
        with self._lock:
            gone = [v for v in self._loaded if v not in serving]
            for version in gone:
                del self._loaded[version]
        return gone


class AdapterModel(Protocol):
    """What ``AdapterPool.use`` yields: a ``peft.PeftModel`` (call it as the base model)."""

    def __call__(self, *args: object, **kwargs: object) -> object: ...
    def set_adapter(self, adapter_name: str) -> None: ...
    def disable_adapter(self) -> AbstractContextManager[None]: ...
    def delete_adapter(self, adapter_name: str) -> None: ...
    def load_adapter(self, model_id: str, adapter_name: str) -> object: ...


def adapter_name(arm: Arm | Target) -> str | None:
    """The name an arm's adapter is loaded under in the PeftModel (from its version id, so an
    adapter keeps its name when it moves from canary to stable)."""
    if arm.adapter is None:
        return None
    return f"mvc-{arm.adapter.version[:16]}"


class _Base:
    def __init__(self, model: Any) -> None:
        # what load_base returned (a torch module), then the PeftModel once an adapter is loaded
        self.model: Any = model
        self.peft: AdapterModel | None = None
        self.adapters: dict[str, ObjectId] = {}
        self.lock = threading.RLock()


class AdapterPool(Generic[B]):
    """One loaded base per base version of a channel, every arm's adapter loaded into it."""

    def __init__(self, router: Router, load_base: Callable[[str], B]) -> None:
        self.router = router
        self._load_base = load_base
        self._lock = threading.Lock()
        self._bases: dict[ObjectId, _Base] = {}
        self.base_loads = 0  # how many times a base was loaded (once per base version)

    def _base(self, version: ObjectId) -> _Base:
        with self._lock:
            found = self._bases.get(version)
            if found is None:
                path = materialise(
                    self.router.repo, self.router.model, version, self.router.cache_dir
                )
                found = _Base(self._load_base(path))
                self.base_loads += 1
                self._bases[version] = found
            return found

    def _ensure(self, base: _Base, arm: Arm) -> str | None:
        """Under ``base.lock``: the arm's adapter loaded; its name."""
        name = adapter_name(arm)
        if name is None or arm.adapter is None or name in base.adapters:
            return name
        path = self.router.adapter_path(arm)
        assert path is not None
        if base.peft is None:
            from peft import PeftModel

            base.peft = PeftModel.from_pretrained(base.model, path, adapter_name=name)
            base.model = base.peft
        else:
            base.peft.load_adapter(path, adapter_name=name)
        base.adapters[name] = arm.adapter.version
        return name

    def sync(self, *, prune: bool = False) -> list[str]:
        """Load every adapter the channel's arms serve now (shadows included); with ``prune``,
        delete those no arm serves. The names loaded."""
        loaded: list[str] = []
        wanted: dict[ObjectId, set[str]] = {}
        for arm in self.router.arms:
            base = self._base(arm.version)
            with base.lock:
                before = set(base.adapters)
                name = self._ensure(base, arm)
                if name is not None:
                    wanted.setdefault(arm.version, set()).add(name)
                    if name not in before:
                        loaded.append(name)
        if prune:
            with self._lock:
                bases = list(self._bases.items())
            for version, base in bases:
                with base.lock:
                    keep = wanted.get(version, set())
                    gone = [n for n in base.adapters if n not in keep]
                    if gone and keep:
                        assert base.peft is not None
                        base.peft.set_adapter(sorted(keep)[0])  # never delete the active one
                    for name in gone:
                        assert base.peft is not None
                        base.peft.delete_adapter(name)
                        del base.adapters[name]
        return loaded

    def adapters(self) -> dict[ObjectId, dict[str, ObjectId]]:
        """Base version -> {adapter name: adapter version} loaded now."""
        with self._lock:
            bases = dict(self._bases)
        return {v: dict(b.adapters) for v, b in bases.items()}

    @contextlib.contextmanager
    def use(self, decision: RouteDecision | Arm) -> Iterator[AdapterModel]:
        """The base of the decision's arm with its adapter active (adapters disabled for an
        arm without one), held for this request alone."""
        arm = decision.arm if isinstance(decision, RouteDecision) else decision
        base = self._base(arm.version)
        with base.lock:
            name = self._ensure(base, arm)
            model = base.model
            if name is not None:
                assert base.peft is not None
                base.peft.set_adapter(name)
                yield base.peft
            elif base.peft is not None:
                with base.peft.disable_adapter():
                    yield base.peft
            else:
                yield model  # the plain base model, called the same way
