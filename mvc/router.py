"""Version-aware routing for serving code: which arm of a channel serves a request.

``Router(repo, "bert", "prod").route("user-42")`` answers deterministically from the channel's
current deployment record:

- **sticky**: a key's bucket is ``blake3(model, channel, key)`` mapped to [0, 100); the same key
  lands in the same arm for as long as the weights do not change, and growing a canary's share
  only moves keys from the stable arm to the canary (the canary occupies the low buckets);
- **weighted**: arm shares match the record's weights (buckets are uniform);
- **shadows separate**: a shadow arm never answers a request; ``decision.shadows`` lists where to
  mirror it;
- **live**: ``refresh()`` (or ``poll_interval``) notices a channel move without a restart;
- **pins**: ``route(key, version="v1.2.0")`` (any spec of the model: a tag, a range such as
  ``^1.2``, an id prefix, ``prod:canary``) answers with the channel's arm serving that version
  (or, for a version the channel does not serve, an arm of weight 0), its role ``pinned``;
  ``version=None`` routes by the channel. A pin is resolved once per channel record (a tag
  created later is seen at the next channel move or ``refresh()``);
- **local files**: ``path(arm)`` materialises a version into a cache folder on first use (a
  checkout into a temporary folder renamed into place, so a folder that exists is complete).
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import quote

import blake3

from mvc.deployment.records import SHADOW, STABLE, AdapterRef, Arm, Record
from mvc.errors import UsageError
from mvc.ids import ObjectId
from mvc.jsonshape import JsonShaped, Shape
from mvc.lastuse import tracker
from mvc.ops.channels import channel_ref, require_current
from mvc.ops.lifecycle import warn_use
from mvc.ops.snapshot import stat_cache_for
from mvc.ops.worktrees import checkout
from mvc.repo import Repo
from mvc.specs import by_id, parse_spec, resolve
from mvc.storage.local import fsync_folder

#: The role of the arm a pinned request is answered with (``RouteDecision.pinned`` holds the pin).
PINNED = "pinned"
_PIN_CACHE = 256  # pins remembered per channel record

CACHE_FOLDER = "serve"
_SCALE = 100.0 / float(1 << 64)


def bucket_of(model: str, channel: str, key: str | bytes) -> float:
    """A request key's place in [0, 100): uniform, and the same on every machine."""
    data = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    digest = blake3.blake3(f"{model}\0{channel}\0".encode() + data).digest(length=8)
    return int.from_bytes(digest, "big") * _SCALE


def serving_order(arms: tuple[Arm, ...]) -> list[Arm]:
    """Arms that take traffic, in bucket order: every non-stable arm first, the stable last,
    so a growing canary takes buckets from the stable and never reshuffles its own keys."""
    weighted = [a for a in arms if a.weight > 0 and a.role != SHADOW]
    return [a for a in weighted if a.role != STABLE] + [a for a in weighted if a.role == STABLE]


def pick(arms: tuple[Arm, ...], bucket: float) -> Arm:
    order = serving_order(arms)
    edge = 0.0
    for arm in order:
        edge += arm.weight
        if bucket < edge:
            return arm
    return order[-1]


@dataclass(frozen=True)
class RouteDecision(JsonShaped):
    model: str
    channel: str
    record: ObjectId
    key: str
    bucket: float
    arm: Arm
    shadows: tuple[Arm, ...]
    pinned: str | None = None  # the version pin the request carried, as given

    @property
    def version(self) -> ObjectId:
        return self.arm.version

    @property
    def label(self) -> str:
        return self.arm.label

    json_shape: ClassVar[Shape] = Shape(convert={"bucket": lambda bucket: round(bucket, 6)})


def default_cache_dir(repo: Repo) -> str:
    return os.path.join(repo.store_dir, "cache", CACHE_FOLDER)


def materialise(repo: Repo, model: str, version: ObjectId, cache_dir: str | None = None) -> str:
    """The local folder holding a version's files, checked out on first use."""
    root = os.path.abspath(cache_dir or default_cache_dir(repo))
    final = os.path.join(root, quote(model, safe=""), version)
    if os.path.isdir(final):
        return final
    os.makedirs(os.path.dirname(final), exist_ok=True)
    temp = os.path.join(os.path.dirname(final), f".tmp-{version[:12]}-{secrets.token_hex(4)}")
    try:
        # Callers (load, Router) have told about a deprecation, or refused, already.
        # durable: a serving folder is trusted by its name alone, never re-checked by stat.
        checkout(repo, by_id(model, version), to=temp, allow_deprecated=True, durable=True)
        try:
            os.rename(temp, final)
        except OSError:
            if not os.path.isdir(final):  # anything but "another process got there first"
                raise
        else:
            if repo.config.get("core.fsync"):  # its name, and the model's folder in the cache
                fsync_folder(os.path.dirname(final))
                fsync_folder(root)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
        try:  # the checkout's stat cache for the temporary folder is of no further use
            os.unlink(stat_cache_for(repo, temp).path)
        except OSError:
            pass
    return final


class Router:
    """Routes request keys to the arms of one channel. Safe to share between threads."""

    def __init__(
        self,
        repo: Repo | str,
        model: str,
        channel: str,
        *,
        cache_dir: str | None = None,
        poll_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        allow_deprecated: bool = False,
    ) -> None:
        self.repo = repo if isinstance(repo, Repo) else Repo.discover(repo)
        self.model = model
        self.channel = channel
        self.cache_dir = cache_dir
        self.poll_interval = poll_interval
        self.allow_deprecated = allow_deprecated
        self._clock = clock
        self._lock = threading.Lock()
        self._record: Record = self._checked_record()
        self._checked = clock()
        self._uses = tracker(
            self.repo.store_dir, self.repo.lock_timeout
        )  # batched: no write per pick
        self._pins: dict[tuple[ObjectId | None, str], Arm] = {}

    def _checked_record(self) -> Record:
        """The channel's record, its versions checked for deprecation once per record (a
        ``VersionDeprecationWarning`` once per process; past a cutoff, ``Deprecated`` unless
        ``allow_deprecated``). Never on the request path."""
        record = require_current(self.repo, self.model, self.channel)
        for arm in record.arms:
            for model, version in [(self.model, arm.version)] + (
                [(arm.adapter.model, arm.adapter.version)] if arm.adapter else []
            ):
                warn_use(
                    self.repo, model, version, allow_deprecated=self.allow_deprecated, stacklevel=5
                )
        return record

    @property
    def record(self) -> Record:
        return self._record

    @property
    def arms(self) -> tuple[Arm, ...]:
        return self._record.arms

    @property
    def shadows(self) -> tuple[Arm, ...]:
        return tuple(a for a in self._record.arms if a.role == SHADOW)

    def refresh(self) -> bool:
        """Re-read the channel; True if it moved since the last look."""
        latest = self.repo.refs.get(channel_ref(self.model, self.channel))
        self._checked = self._clock()
        if latest is None or latest == self._record.id:
            return False
        record = self._checked_record()
        with self._lock:
            self._record = record
            self._pins = {}
        return True

    def _maybe_poll(self) -> None:
        if self.poll_interval is not None and self._clock() - self._checked >= self.poll_interval:
            self.refresh()

    def route(self, key: str | bytes, version: str | None = None) -> RouteDecision:
        """The arm that serves ``key``: by the channel's sticky weights, or, with ``version``
        (a spec of this model: ``v1.2.0``, ``^1.2``, an id prefix, ``prod:canary``), the arm
        pinned to that version. Shadows are listed either way."""
        self._maybe_poll()
        record = self._record
        bucket = bucket_of(self.model, self.channel, key)
        assert record.id is not None
        arm = pick(record.arms, bucket) if version is None else self._pinned(record, version)
        self._uses.note(self.model, arm.version, self.repo.clock)
        if arm.adapter is not None:  # served with its base: used too (as load notes it)
            self._uses.note(arm.adapter.model, arm.adapter.version, self.repo.clock)
        return RouteDecision(
            self.model,
            self.channel,
            record.id,
            key if isinstance(key, str) else bytes(key).hex(),
            bucket,
            arm,
            tuple(a for a in record.arms if a.role == SHADOW),
            version,
        )

    def _pinned(self, record: Record, pin: str) -> Arm:
        """The arm a pin names, role ``pinned``: the channel's arm serving that version (its
        label kept; an arm taking traffic first, then green, blue and shadow arms), or a weight-0 arm of it."""
        cached = self._pins.get((record.id, pin))
        if cached is not None:
            return cached
        text = pin.strip()
        if not text:
            raise UsageError("an empty version pin", hint="pin a tag, a range or a version id")
        spec = parse_spec(text if "@" in text else f"{self.model}@{text}")
        if spec.model != self.model:
            raise UsageError(
                f"version pin {pin!r} names model {spec.model!r}, but this router serves "
                f"{self.model!r}",
                hint=f"pin a version of {self.model} (a tag, a range or an id)",
            )
        resolved = resolve(self.repo, spec)
        adapter: AdapterRef | None = resolved.adapter
        answering = serving_order(record.arms)
        ordered = answering + [a for a in record.arms if a not in answering]
        matches = [
            a
            for a in ordered
            if a.version == resolved.version and (adapter is None or a.adapter == adapter)
        ]
        found = matches[0] if matches else None
        if found is None:  # not checked with the record: a use of a version it does not serve
            for model, version in [(self.model, resolved.version)] + (
                [(adapter.model, adapter.version)] if adapter else []
            ):
                warn_use(
                    self.repo, model, version, allow_deprecated=self.allow_deprecated, stacklevel=4
                )
        arm = Arm(
            PINNED,
            resolved.version,
            0,
            found.label if found else None,
            found.adapter if found else adapter,
        )
        with self._lock:
            if len(self._pins) >= _PIN_CACHE:
                self._pins.clear()
            self._pins[(record.id, pin)] = arm
        return arm

    def path(self, arm: Arm | RouteDecision) -> str:
        """The local folder of an arm's base version (materialised on first use)."""
        arm = arm.arm if isinstance(arm, RouteDecision) else arm
        return materialise(self.repo, self.model, arm.version, self.cache_dir)

    def adapter_path(self, arm: Arm | RouteDecision) -> str | None:
        arm = arm.arm if isinstance(arm, RouteDecision) else arm
        if arm.adapter is None:
            return None
        return materialise(self.repo, arm.adapter.model, arm.adapter.version, self.cache_dir)
