"""A repository: a store folder (``.mvc/``) wired into objects, refs and config.

``Repo`` is what ops receive. The same ``ObjectStore`` and ``RefStore`` classes serve a remote
over another storage; only a local repo has working-folder bindings, locks and a stat cache.
"""

from __future__ import annotations

import getpass
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mvc.canonical import decode_json, encode_canonical
from mvc.config import (
    CONFIG_FILE,
    Config,
    env_overrides,
    parse_config_text,
    render_config,
    user_config_path,
    validate,
)
from mvc.errors import InvalidInput, MvcError, NotFound, StoreNotFound, UnknownFormat
from mvc.ids import ObjectId, is_object_id
from mvc.jsonshape import JsonShaped
from mvc.refnames import validate_branch, validate_model
from mvc.refs import RefStore, local_ref_lock
from mvc.storage import lock
from mvc.storage.local import LocalStorage
from mvc.store import FORMAT_FILE, FORMAT_LINES, NEWEST_FORMAT, ObjectStore, format_of_line

STORE_DIR = ".mvc"
FORMAT_LINE = FORMAT_LINES[1]  # what `mvc init` writes: a store is upgraded when it needs to be
WORKTREES = "worktrees"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Binding(JsonShaped):
    """A model's working folder (relative to the store's root) and its HEAD."""

    model: str
    path: str
    branch: str | None  # None: detached
    version: ObjectId | None = None  # set when detached


def _escape(model: str) -> str:
    from urllib.parse import quote

    return quote(model, safe="")


def find_store_root(start: str) -> str | None:
    """The folder holding ``.mvc/``, walking up from ``start``."""
    current = os.path.abspath(start)
    while True:
        if os.path.isdir(os.path.join(current, STORE_DIR)):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


class Repo:
    def __init__(
        self,
        root: str,
        *,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, object] | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.root = os.path.abspath(root)
        if os.path.basename(self.root) == STORE_DIR and os.path.isfile(
            os.path.join(self.root, FORMAT_FILE)
        ):
            self.root = os.path.dirname(self.root)  # named the store folder itself (MVC_DIR=.mvc)
        self.store_dir = os.path.join(self.root, STORE_DIR)
        self.env = dict(os.environ if env is None else env)
        self.clock = clock
        self._identity: str | None = None
        store_format = self._check_format()
        self.config = self._load_config(overrides or {})
        self.storage = LocalStorage(self.store_dir, fsync=bool(self.config.get("core.fsync")))
        self.objects = ObjectStore(self.storage, store_format=store_format)
        self.lock_timeout = float(self.config.get("core.lock_timeout"))
        self.refs = RefStore(
            self.storage,
            who=self.identity,
            now=lambda: format_time(self.clock()),
            lock=local_ref_lock(self.store_dir, self.lock_timeout),
        )

    # --- opening ------------------------------------------------------------------------------

    @classmethod
    def init(cls, root: str, **kwargs: Any) -> Repo:
        store_dir = os.path.join(os.path.abspath(root), STORE_DIR)
        if os.path.exists(os.path.join(store_dir, FORMAT_FILE)):
            raise MvcError(
                f"a store already exists at {store_dir}", hint="use it, or pick another folder"
            )
        os.makedirs(store_dir, exist_ok=True)
        storage = LocalStorage(store_dir)
        for folder in ("objects", "refs", "locks", WORKTREES):
            os.makedirs(os.path.join(store_dir, folder), exist_ok=True)
        storage.write(CONFIG_FILE, [b"# mvc store configuration (see `mvc config --help`)\n"])
        storage.write(FORMAT_FILE, [FORMAT_LINE.encode()])  # last: its presence means complete
        return cls(root, **kwargs)

    @classmethod
    def discover(cls, start: str | None = None, **kwargs: Any) -> Repo:
        root = find_store_root(start or os.getcwd())
        if root is None:
            raise StoreNotFound(
                f"no mvc store in {os.path.abspath(start or os.getcwd())} or any parent folder",
                hint="run `mvc init` here, or pass -C DIR / set MVC_DIR",
            )
        return cls(root, **kwargs)

    def _check_format(self) -> int:
        path = os.path.join(self.store_dir, FORMAT_FILE)
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                line = handle.read(200)
        except FileNotFoundError as exc:
            raise StoreNotFound(
                f"{self.store_dir} is not an mvc store (no format file)",
                hint="run `mvc init` to create one",
            ) from exc
        found = format_of_line(line)
        if found is None:
            raise UnknownFormat(
                f"the store at {self.store_dir} has format {line.strip()!r}; this mvc reads "
                f"store formats 1 to {NEWEST_FORMAT} and will not touch it",
                hint="upgrade mvc",
            )
        return found

    # --- configuration ------------------------------------------------------------------------

    def _load_config(self, overrides: Mapping[str, object]) -> Config:
        layers: list[tuple[str, dict[str, Any]]] = []
        user_path = user_config_path(self.env)
        if os.path.isfile(user_path):
            with open(user_path, encoding="utf-8", errors="replace") as handle:
                layers.append((user_path, parse_config_text(handle.read(), user_path)))
        layers.append(
            (self.config_path, parse_config_text(self._read_store_config(), self.config_path))
        )
        layers.append(("environment", env_overrides(self.env)))
        layers.append(("flags", {k: validate(k, v) for k, v in overrides.items()}))
        return Config(layers)

    @property
    def config_path(self) -> str:
        return os.path.join(self.store_dir, CONFIG_FILE)

    def _read_store_config(self) -> str:
        try:
            with open(self.config_path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def store_config(self) -> dict[str, Any]:
        return parse_config_text(self._read_store_config(), self.config_path)

    def write_store_config(self, values: dict[str, Any]) -> None:
        with lock.hold(os.path.join(self.store_dir, "locks", "config"), timeout=self.lock_timeout):
            self.storage.write(CONFIG_FILE, [render_config(values).encode()])
        self.config = self._load_config({})
        self._identity = None

    @contextmanager
    def editing_config(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write of the store config under its lock (no lost update)."""
        with lock.hold(os.path.join(self.store_dir, "locks", "config"), timeout=self.lock_timeout):
            values = self.store_config()
            yield values
            self.storage.write(CONFIG_FILE, [render_config(values).encode()])
        self.config = self._load_config({})
        self._identity = None

    # --- identity and time --------------------------------------------------------------------

    def identity(self) -> str:
        """Author of versions and ref moves: config, then `git config`, then the OS user."""
        if self._identity is None:
            self._identity = self._find_identity()
        return self._identity

    def identity_source(self) -> str:
        """Where :meth:`identity` comes from, for ``mvc config list``."""
        if self.config.get("user.name"):
            return f"user.name from {self.config.source('user.name')}"
        if _git_identity(self.root):
            return "git config user.name"
        return "the operating system's user name (set user.name)"

    def identity_guessed(self) -> bool:
        """Whether the identity is only the operating system's user name (nothing configured
        says who this is): commit then says so, as git does."""
        return not self.config.get("user.name") and not _git_identity(self.root)

    def _find_identity(self) -> str:
        name = self.config.get("user.name")
        email = self.config.get("user.email")
        if not name:
            name, email = _git_identity(self.root) or (None, email)
        if not name:
            try:
                name = getpass.getuser()
            except (KeyError, OSError):
                name = "unknown"
        return f"{name} <{email}>" if email else str(name)

    def now(self) -> str:
        return format_time(self.clock())

    # --- locks --------------------------------------------------------------------------------

    @contextmanager
    def writing_objects(self) -> Iterator[None]:
        """Held (shared) while objects are written, so gc (exclusive) never runs alongside."""
        with lock.hold(
            os.path.join(self.store_dir, "locks", "objects"), shared=True, timeout=self.lock_timeout
        ):
            yield

    @contextmanager
    def collecting_garbage(self) -> Iterator[None]:
        with lock.hold(os.path.join(self.store_dir, "locks", "objects"), timeout=self.lock_timeout):
            yield

    # --- working-folder bindings --------------------------------------------------------------

    def _binding_key(self, model: str) -> str:
        return f"{WORKTREES}/{_escape(validate_model(model))}.json"

    def binding(self, model: str) -> Binding | None:
        try:
            raw = decode_json(self.storage.read(self._binding_key(model)), f"binding of {model}")
        except NotFound:
            return None
        try:
            path, branch, version = raw["path"], raw.get("branch"), raw.get("version")
            if not isinstance(path, str) or (branch is not None and not isinstance(branch, str)):
                raise TypeError
            if branch is not None:
                validate_branch(branch)
            if version is not None and not (isinstance(version, str) and is_object_id(version)):
                raise TypeError
        except (KeyError, TypeError) as exc:
            raise InvalidInput(
                f"the working-folder binding of {model!r} is damaged",
                hint=f"remove {self._binding_key(model)} in .mvc/ and run `mvc checkout` again",
            ) from exc
        return Binding(model, path, branch, ObjectId(version) if version else None)

    def bindings(self) -> list[Binding]:
        from urllib.parse import unquote

        found = []
        for name in self.storage.list(WORKTREES):
            if name.endswith(".json"):
                binding = self.binding(unquote(name[: -len(".json")]))
                if binding:
                    found.append(binding)
        return found

    def remove_binding(self, model: str) -> None:
        """Forget a model's working folder (the folder and its files stay as they are)."""
        self.storage.delete(self._binding_key(model))

    def set_binding(self, binding: Binding) -> None:
        self.storage.write(self._binding_key(binding.model), [encode_canonical(binding.to_json())])

    def binding_for_path(self, folder: str) -> Binding | None:
        rel = self.relpath(folder)
        for binding in self.bindings():
            if binding.path == rel:
                return binding
        return None

    def relpath(self, path: str) -> str:
        """A path relative to the store's root, '/'-separated ('.' for the root itself)."""
        return os.path.relpath(os.path.abspath(path), self.root).replace(os.sep, "/")

    def abspath(self, rel: str) -> str:
        return os.path.normpath(os.path.join(self.root, rel))


def _git_identity(cwd: str) -> tuple[str, str | None] | None:
    def ask(key: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "config", key], cwd=cwd, capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() or None if out.returncode == 0 else None

    name = ask("user.name")
    return (name, ask("user.email")) if name else None


@contextmanager
def editing_user_config(env: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Read-modify-write of the user's configuration file (``~/.config/mvc/config.yaml``, or
    under ``$XDG_CONFIG_HOME``), the lowest layer; no store is needed. Yields the values."""
    path = user_config_path(os.environ if env is None else env)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    with lock.hold(os.path.join(folder, "config.lock"), timeout=60.0):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                values = parse_config_text(handle.read(), path)
        except FileNotFoundError:
            values = {}
        yield values
        LocalStorage(folder).write(CONFIG_FILE, [render_config(values).encode()])
