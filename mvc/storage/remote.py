"""Storages on fsspec filesystems (S3, GCS, Azure, memory, ...), and opening a storage by URL.

One class, ``FsspecStorage``, serves every fsspec filesystem; what differs between backends lives
in a small adapter chosen from the filesystem's protocol:

- **S3**: a write is one PutObject, or a multipart upload that S3 publishes only when it is
  completed, so readers never see part of a value. ``create_exclusive`` is PutObject with
  ``If-None-Match: *`` (s3fs: ``pipe_file(path, data, mode="create")``); S3 refuses it with
  412 PreconditionFailed when the key exists, which s3fs raises as FileExistsError.
- **memory**: a value is replaced whole; ``create_exclusive`` is check-then-write under one
  process-wide lock. That is exact because a memory filesystem lives in one process.
- **anything else** (gcs, az, sftp, ...): a write goes to a temp key beside the target and is
  moved into place. ``create_exclusive`` is check-then-write and NOT atomic, so
  ``atomic_create`` is False; refs on such a remote are unsafe with concurrent writers, which
  ``probe_atomic_create`` reports to ``mvc remote add``.

Invariants:

- Every key passes ``validate_key`` before use; a key from a listing that fails it is skipped,
  never followed. Temp keys (``.tmp-*``) are never listed.
- Transient failures (timeouts, resets, 5xx, throttling) are retried with bounded exponential
  backoff by ``RetryPolicy``. On S3 opened by ``open_storage`` it is the only retry layer
  (s3fs' and botocore's own retries are switched off), so attempts never multiply. A refused
  ``create_exclusive`` reads the key back: an earlier attempt of ours may have landed with its
  answer lost (aiohttp itself re-sends an idempotent PUT on a dropped connection), so the key
  counts as ours when it holds exactly our bytes.
- Permanent failures raise ``RemoteError`` naming the remote and the key, never credentials;
  an absent key is ``NotFound``.
- fsspec and its backends are imported inside functions, so ``mvc --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

from mvc.errors import InvalidInput, MvcError, NotFound, RemoteError, UsageError
from mvc.instants import parse_instant
from mvc.storage.base import Buffer, Storage, StorageBase, validate_key
from mvc.storage.local import TMP_PREFIX, LocalStorage

T = TypeVar("T")

#: Where ``probe_atomic_create`` writes its throw-away key.
PROBE_FOLDER = "probe"
#: Values up to this size go to S3 in one PUT; larger ones as a multipart upload of such parts.
S3_PART_SIZE = 32 * 2**20
#: Read-ahead of the streams ``open_read`` returns (one ranged GET per buffer).
READ_BUFFER = 8 * 2**20
#: A listing (one folder, or everything below a prefix) stops with an error after this many
#: pages or names: a remote that keeps answering "there is more" cannot keep mvc busy, or
#: fill its memory, forever. S3 pages hold 1000 names, so real listings stay far below.
MAX_LIST_PAGES = 5_000
MAX_LIST_ENTRIES = 2_000_000

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_EXTRAS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "adl": "azure",
}


#: Seconds to wait for a connection, and for each answer (a stalled server), unless the
#: remote's ``connect_timeout`` / ``read_timeout`` options say otherwise (S3).
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
#: Options mvc reads itself (seconds); on S3 they become botocore's timeouts.
TIMEOUT_OPTIONS = ("connect_timeout", "read_timeout")
#: The S3 storage class objects are written with (``GLACIER_IR``, ``STANDARD_IA``…): a cold
#: remote's option, passed to s3fs as ``s3_additional_kwargs={"StorageClass": ...}``.
STORAGE_CLASS_OPTION = "storage_class"
#: Backend options that take a mapping, which a text option cannot give.
_MAPPING_OPTIONS = frozenset({"storage_options", "kwargs", "headers", "default_acl_kwargs"})


def _s3_defaults(timeouts: dict[str, float]) -> dict[str, Any]:
    """s3fs options mvc sets unless the remote's options say otherwise.

    A fresh instance (not fsspec's shared one) with no listings cache, since other processes
    move refs; no botocore retries, since RetryPolicy is the one retry layer; and bounded
    connect and read timeouts, so a stalled server costs seconds, not forever.
    """
    return {
        "skip_instance_cache": True,
        "use_listings_cache": False,
        "config_kwargs": {
            "retries": {"mode": "standard", "total_max_attempts": 1},
            "connect_timeout": timeouts.get("connect_timeout", CONNECT_TIMEOUT),
            "read_timeout": timeouts.get("read_timeout", READ_TIMEOUT),
        },
    }


def check_option(key: str, value: str, *, storing: bool = True) -> None:
    """Refuse an option value the backend could not take, or (``storing``: about to be written
    into a store's config) that carries a credential.

    Option values are text (``true``/``false`` become booleans), so options that need a
    mapping (``client_kwargs`` and the like) cannot be given; timeouts are seconds. Options
    read from a config are not refused for a password: the user's own config may hold one.
    """
    if key in _MAPPING_OPTIONS or key.endswith("_kwargs"):
        raise UsageError(
            f"remote option {key!r} expects a mapping, and options are text (KEY=VALUE)",
            hint="set what it would carry with a plain option where the backend has one "
            "(e.g. endpoint_url, region_name for S3 is read from AWS_DEFAULT_REGION)",
        )
    if key in TIMEOUT_OPTIONS:
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not 0 < seconds < 86400:
            raise UsageError(
                f"remote option {key!r} expects a number of seconds, got {value[:40]!r}",
                hint=f"e.g. -o {key}=30",
            )
    if storing and _has_password(value):
        raise UsageError(
            f"refusing remote option {key!r}: its URL carries a password, and credentials "
            "are never written into a store",
            hint="give the URL without user:password@ and the credentials the way the "
            "backend expects them (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an AWS "
            "profile, GCS application credentials, Azure environment variables)",
        )


def _has_password(value: str) -> bool:
    for match in _URL_IN_TEXT.finditer(value):
        try:
            if urlsplit(match.group(0)).password is not None:
                return True
        except ValueError:
            return True  # unparseable: refuse rather than store what might be a secret
    return False


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


# --- retries --------------------------------------------------------------------------------------

_TRANSIENT_ERRNOS = frozenset(
    {
        errno.EBUSY,  # s3fs: SlowDown, 503 ServiceUnavailable, OperationAborted
        getattr(errno, "EREMOTEIO", errno.EIO),  # s3fs: 500 InternalError
        errno.EAGAIN,
        errno.ETIMEDOUT,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ECONNREFUSED,
        errno.EPIPE,
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
        "ConditionalRequestConflict",  # S3: a concurrent conditional write; retry decides
    }
)
# Connection-level failures of backend libraries, matched by class name so that checking an
# error never imports botocore or aiohttp.
_TRANSIENT_CLASSES = frozenset(
    {
        "HTTPClientError",  # botocore: ReadTimeoutError, ConnectionClosedError, ...
        # botocore's own ConnectionError family (not the builtin): refused or unreachable
        # endpoints and connect timeouts. Its SSLError sibling is left out: a certificate
        # that does not verify will not verify on the next try either.
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ProxyConnectionError",
        "ResponseParserError",  # botocore: S3 throttling can answer with broken XML
        "IncompleteReadError",
        "IncompleteRead",
        "ClientConnectionError",  # aiohttp
        "ClientPayloadError",
        "ServerTimeoutError",
    }
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        yield current
        current = current.__cause__
        seen += 1


def _response(exc: BaseException) -> tuple[int | None, str]:
    """HTTP status and error code of a botocore-style ClientError (duck-typed), else (None, '')."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None, ""
    error = response.get("Error") or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return (status if isinstance(status, int) else None), str(error.get("Code", ""))


def is_transient(exc: BaseException) -> bool:
    """Whether running the same request again may succeed (timeouts, resets, 5xx, throttling)."""
    for item in _chain(exc):
        if isinstance(item, FileNotFoundError | FileExistsError | PermissionError):
            return False
        status, code = _response(item)
        if status is not None or code:
            if code in _TRANSIENT_CODES:
                return True
            return status is not None and (
                status in (408, 429) or (status >= 500 and status != 501)
            )
        if isinstance(item, TimeoutError | ConnectionError):
            return True
        if isinstance(item, OSError) and item.errno in _TRANSIENT_ERRNOS:
            return True
        if any(cls.__name__ in _TRANSIENT_CLASSES for cls in type(item).__mro__):
            return True
    return False


def _is_precondition_failed(exc: BaseException) -> bool:
    """A refused create-if-absent: FileExistsError, or a 412 that s3fs could not name."""
    for item in _chain(exc):
        if isinstance(item, FileExistsError):
            return True
        status, code = _response(item)
        if status == 412 or code == "PreconditionFailed":
            return True
    return False


def backend_errors() -> tuple[type[BaseException], ...]:
    """Exception types a storage backend raises for failed requests.

    Only libraries that are already loaded can have raised, so nothing is imported here.
    """
    found: list[type[BaseException]] = [OSError]
    for module, names in (
        ("botocore.exceptions", ("BotoCoreError", "ClientError")),
        ("aiohttp", ("ClientError",)),
        ("google.api_core.exceptions", ("GoogleAPIError",)),
        ("azure.core.exceptions", ("AzureError",)),
    ):
        loaded = sys.modules.get(module)
        for name in names:
            kind = getattr(loaded, name, None)
            if isinstance(kind, type) and issubclass(kind, BaseException):
                found.append(kind)
    return tuple(found)


def _wait(seconds: float) -> None:
    time.sleep(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter for transient failures.

    ``tries`` counts every attempt (the first included); delays double from ``first_delay`` up
    to ``max_delay``. ``sleep`` is injectable so tests do not wait (default: ``_wait``,
    looked up at each pause).
    """

    tries: int = 5
    first_delay: float = 0.2
    max_delay: float = 5.0
    sleep: Callable[[float], None] | None = None

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_delay, self.first_delay * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1)

    def run(
        self, fn: Callable[[], T], on_retry: Callable[[BaseException], None] | None = None
    ) -> T:
        """Call ``fn`` until it succeeds, fails permanently, or ``tries`` attempts are spent."""
        errors = backend_errors()
        attempt = 1
        while True:
            try:
                return fn()
            except errors as exc:
                if attempt >= self.tries or not is_transient(exc):
                    raise
                if on_retry is not None:
                    on_retry(exc)
                (self.sleep or _wait)(self.delay(attempt))
                attempt += 1


# --- messages -------------------------------------------------------------------------------------

_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")
_SECRET_PARAM = re.compile(r"(?i)\b(signature|credential|token|secret|password|sig)=[^&\s]*")


def _scrub(text: str) -> str:
    """Drop user info and signature-like parameters from text that may contain URLs."""
    return _SECRET_PARAM.sub(r"\1=***", _USERINFO.sub("", text))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return _scrub(f"{name}: {text[:300]}" if text else name)


def display_url(url: str) -> str:
    """The URL for messages: no user info, no query (SAS tokens and the like live there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


# --- reading in ranges ----------------------------------------------------------------------------


class _RangeReader(io.RawIOBase):
    """A raw stream over ``fetch(start, end)``: each read is one (retried) ranged request."""

    def __init__(self, fetch: Callable[[int, int], bytes], size: int, what: str) -> None:
        super().__init__()
        self._fetch = fetch
        self._size = size
        self._pos = 0
        self._what = what

    def readable(self) -> bool:
        return True

    def _next(self, count: int) -> bytes:
        end = min(self._size, self._pos + count)
        if end <= self._pos:
            return b""
        data = self._fetch(self._pos, end)
        if not data:
            raise RemoteError(
                f"{self._what} shrank while it was read",
                hint="someone rewrote it; run the command again",
            )
        if len(data) > end - self._pos:
            # A server (or proxy) that ignores Range answers with the whole value: taking it
            # as the asked-for piece would be wrong bytes, and reading on would fetch it again
            # for every piece.
            raise RemoteError(
                f"{self._what}: the server answered a read of {end - self._pos} bytes with "
                f"{len(data)}; it ignores ranged reads (Range)",
                hint="mvc reads large values in ranges; use a server or proxy that honours "
                "Range requests",
            )
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._next(len(view))
        view[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        chunks = []
        while chunk := self._next(self._size - self._pos):
            chunks.append(chunk)
        return b"".join(chunks)


# --- backend adapters -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stat:
    size: int
    mtime: float | None


def _timestamp(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_instant(value).timestamp()
        except UsageError:
            return None
    return None


def _info_mtime(info: dict[str, Any]) -> float | None:
    for field in ("LastModified", "last_modified", "mtime", "updated", "modified", "created"):
        stamp = _timestamp(info.get(field))
        if stamp is not None:
            return stamp
    return None


Runner = Callable[[Callable[[], Any]], Any]


def _endless(path: str, amount: str) -> RemoteError:
    return RemoteError(
        f"the listing of {path} did not end after {amount}; stopped",
        hint="the remote answers with a listing that never ends (a misbehaving server or "
        "proxy), or holds far more keys than a store does; check it",
    )


def _capped(names: list[str], path: str) -> list[str]:
    if len(names) > MAX_LIST_ENTRIES:
        raise _endless(path, f"{MAX_LIST_ENTRIES} names")
    return names


class _Adapter:
    """What differs between fsspec backends. This base is the generic, portable behaviour."""

    atomic_create = False

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def names(self, path: str, *, recursive: bool, run: Runner) -> list[str]:
        """Full paths below ``path``: direct children (files and folders), or every file."""

        def listing() -> list[str]:
            self.fs.invalidate_cache(path)
            try:
                if recursive:
                    return [str(name) for name in self.fs.find(path)]
                return [str(entry.get("name", "")) for entry in self.fs.ls(path, detail=True)]
            except (FileNotFoundError, NotADirectoryError):
                return []

        return _capped(run(listing), path)

    def stat(self, path: str) -> _Stat | None:
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            return None
        if info.get("type") != "file":
            return None
        mtime = _info_mtime(info)
        if mtime is None:
            try:
                mtime = _timestamp(self.fs.modified(path))
            except NotImplementedError:
                mtime = None
        return _Stat(int(info.get("size") or 0), mtime)

    def create(self, path: str, data: bytes, run: Runner) -> bool:
        """Check-then-write: not atomic (``atomic_create`` is False)."""
        if run(lambda: self.stat(path)) is not None:
            return False
        self.put(path, [data], run)
        return True

    def put(self, path: str, parts: Iterable[Buffer], run: Runner) -> None:
        """Write a temp key beside the target, then move it into place."""
        folder = path.rpartition("/")[0]
        temp = f"{folder}/{TMP_PREFIX}{os.urandom(8).hex()}"
        run(lambda: self.fs.makedirs(folder, exist_ok=True))
        try:
            with self.fs.open(temp, "wb") as handle:
                for part in parts:
                    handle.write(part)
            run(lambda: self.fs.mv(temp, path))
        except BaseException:
            try:
                self.fs.rm_file(temp)
            except backend_errors():
                pass  # best effort; listings never show temp keys
            raise


_MEMORY_LOCK = threading.Lock()


class _MemoryAdapter(_Adapter):
    """fsspec's in-process memory filesystem: exclusive creation under a process-wide lock."""

    atomic_create = True

    def create(self, path: str, data: bytes, run: Runner) -> bool:
        with _MEMORY_LOCK:
            if self.fs.isfile(path):
                return False
            run(lambda: self.fs.pipe_file(path, data))
            return True

    def put(self, path: str, parts: Iterable[Buffer], run: Runner) -> None:
        # A streamed memory file is visible while it is written: build the value, then store it.
        data = b"".join(parts)
        with _MEMORY_LOCK:
            run(lambda: self.fs.pipe_file(path, data))


class _S3Adapter(_Adapter):
    """S3 and S3-compatible stores.

    An S3-compatible store that ignores ``If-None-Match`` would overwrite silently while this
    adapter claims atomic creation: ``probe_atomic_create`` catches that at ``mvc remote add``.
    """

    atomic_create = True
    part_size = S3_PART_SIZE

    def _split(self, path: str) -> tuple[str, str]:
        bucket, key, _version = self.fs.split_path(path)
        return bucket, key

    def stat(self, path: str) -> _Stat | None:
        bucket, key = self._split(path)
        try:
            head = self.fs.call_s3("head_object", Bucket=bucket, Key=key)
        except FileNotFoundError:
            return None
        return _Stat(int(head.get("ContentLength") or 0), _timestamp(head.get("LastModified")))

    def names(self, path: str, *, recursive: bool, run: Runner) -> list[str]:
        """ListObjectsV2 page by page (each page retried alone), at most ``MAX_LIST_PAGES``."""
        bucket, key = self._split(path)
        prefix = f"{key.rstrip('/')}/" if key else ""
        found: list[str] = []
        token: str | None = None
        for _page in range(MAX_LIST_PAGES):
            request: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if not recursive:
                request["Delimiter"] = "/"
            if token:
                request["ContinuationToken"] = token
            page = run(functools.partial(self.fs.call_s3, "list_objects_v2", **request))
            found.extend(f"{bucket}/{item['Key']}" for item in page.get("Contents") or [])
            found.extend(
                f"{bucket}/{item['Prefix'].rstrip('/')}"
                for item in page.get("CommonPrefixes") or []
            )
            _capped(found, path)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return found
        raise _endless(path, f"{MAX_LIST_PAGES} pages")

    def create(self, path: str, data: bytes, run: Runner) -> bool:
        def attempt() -> bool:
            try:
                self.fs.pipe_file(path, data, mode="create")
            except backend_errors() as exc:
                if _is_precondition_failed(exc):
                    return False
                raise
            return True

        return bool(run(attempt))

    def put(self, path: str, parts: Iterable[Buffer], run: Runner) -> None:
        buffer = bytearray()
        upload: _MultipartUpload | None = None
        try:
            for part in parts:
                buffer += part
                if len(buffer) >= self.part_size:
                    upload = upload or _MultipartUpload(self.fs, *self._split(path), run)
                    upload.add(bytes(buffer))
                    buffer.clear()
            if upload is None:
                data = bytes(buffer)
                run(lambda: self.fs.pipe_file(path, data))
                return
            if buffer:
                upload.add(bytes(buffer))
            upload.complete()
        except BaseException:
            if upload is not None:
                upload.abort()
            raise


class _MultipartUpload:
    """An S3 multipart upload: invisible until ``complete``; each request retried alone."""

    def __init__(self, fs: Any, bucket: str, key: str, run: Runner) -> None:
        self.fs = fs
        self.where = {"Bucket": bucket, "Key": key}
        self.run = run
        created = run(lambda: fs.call_s3("create_multipart_upload", **self.where))
        self.upload_id = created["UploadId"]
        self.parts: list[dict[str, Any]] = []

    def add(self, data: bytes) -> None:
        number = len(self.parts) + 1
        out = self.run(
            lambda: self.fs.call_s3(
                "upload_part", **self.where, UploadId=self.upload_id, PartNumber=number, Body=data
            )
        )
        self.parts.append({"PartNumber": number, "ETag": out["ETag"]})

    def complete(self) -> None:
        self.run(
            lambda: self.fs.call_s3(
                "complete_multipart_upload",
                **self.where,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        )

    def abort(self) -> None:
        try:
            self.fs.call_s3("abort_multipart_upload", **self.where, UploadId=self.upload_id)
        except backend_errors():
            pass  # the upload was never completed, so nothing is visible; a lifecycle rule reaps it


def _protocols(fs: Any) -> set[str]:
    protocol = getattr(fs, "protocol", ())
    return {protocol} if isinstance(protocol, str) else set(protocol)


def _adapter_for(fs: Any) -> _Adapter:
    protocols = _protocols(fs)
    if protocols & {"s3", "s3a"}:
        return _S3Adapter(fs)
    if "memory" in protocols:
        return _MemoryAdapter(fs)
    return _Adapter(fs)


# --- the storage ----------------------------------------------------------------------------------


class FsspecStorage(StorageBase):
    """Storage on an fsspec filesystem below ``root`` (a path in that filesystem). It has
    none of ``StorageBase``'s capabilities (see ``BoundedReadStorage`` for why not that one)."""

    def __init__(
        self, fs: Any, root: str, *, url: str | None = None, retry: RetryPolicy | None = None
    ) -> None:
        self.fs = fs
        self.root = fs._strip_protocol(root).rstrip("/")
        protocol = sorted(_protocols(fs))[0] if _protocols(fs) else "fsspec"
        self.url = display_url(url) if url else f"{protocol}://{self.root.lstrip('/')}"
        self.retry = retry or RetryPolicy()
        self._adapter = _adapter_for(fs)
        self.atomic_create = self._adapter.atomic_create

    def __repr__(self) -> str:
        return f"FsspecStorage({self.url!r})"

    # --- plumbing ---------------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        return f"{self.root}/{validate_key(key)}"

    def _translate(self, what: str, key: str, fn: Callable[[], T], *, missing: bool = True) -> T:
        """Run ``fn``; backend failures become NotFound or a RemoteError naming remote and key."""
        try:
            return fn()
        except FileNotFoundError as exc:
            if missing:
                raise NotFound(f"{key} not found in {self.url}") from exc
            raise RemoteError(
                f"cannot {what} {key} on {self.url}: the bucket or folder does not exist",
                hint="check the remote's URL (`mvc remote -v`)",
            ) from exc
        except backend_errors() as exc:
            raise self._failure(what, key, exc) from exc

    def _call(self, what: str, key: str, fn: Callable[[], T], *, missing: bool = True) -> T:
        return self._translate(what, key, lambda: self.retry.run(fn), missing=missing)

    def _failure(self, what: str, key: str, exc: BaseException) -> RemoteError:
        where = f"{key or 'the store root'} on {self.url}"
        statuses = {_response(item)[0] for item in _chain(exc)}
        if isinstance(exc, PermissionError) or statuses & {401, 403}:
            return RemoteError(
                f"access denied: cannot {what} {where}: {_reason(exc)}",
                hint="check this remote's credentials (AWS profile or environment, "
                "GCS application credentials) and its access policy",
            )
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return RemoteError(
                f"the remote is full: cannot {what} {where}", hint="free space on the remote"
            )
        if is_transient(exc):
            return RemoteError(
                f"cannot {what} {where}: still failing after {self.retry.tries} tries: "
                f"{_reason(exc)}",
                hint="the remote is unreachable or overloaded; run the command again later",
            )
        return RemoteError(f"cannot {what} {where}: {_reason(exc)}")

    def _stat(self, key: str) -> _Stat | None:
        path = self._path(key)
        return self._call("look up", key, lambda: self._adapter.stat(path))

    def _require(self, key: str) -> _Stat:
        found = self._stat(key)
        if found is None:
            raise NotFound(f"{key} not found in {self.url}")
        return found

    # --- the Storage protocol ---------------------------------------------------------------------

    def read(self, key: str) -> bytes:
        path = self._path(key)
        return bytes(self._call("read", key, lambda: self.fs.cat_file(path)))

    def read_at_most(self, key: str, limit: int) -> bytes | None:
        """The value, or None when it is longer than ``limit`` bytes (as ``LocalStorage``'s):
        one ranged request for ``limit`` + 1 bytes, so a value that should be small (a ref-log
        entry) costs no more than that when it is not."""
        path = self._path(key)
        data = bytes(
            self._call("read", key, lambda: self.fs.cat_file(path, start=0, end=limit + 1))
        )
        return None if len(data) > limit else data

    def open_read(self, key: str) -> BinaryIO:
        path = self._path(key)
        size = self._require(key).size

        def fetch(start: int, end: int) -> bytes:
            return bytes(
                self._call("read", key, lambda: self.fs.cat_file(path, start=start, end=end))
            )

        raw = _RangeReader(fetch, size, f"{key} on {self.url}")
        return io.BufferedReader(raw, buffer_size=max(1, min(READ_BUFFER, size)))

    def write(self, key: str, parts: Iterable[Buffer]) -> None:
        path = self._path(key)
        self._translate(
            "write", key, lambda: self._adapter.put(path, parts, self.retry.run), missing=False
        )

    def create_exclusive(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        created = self._translate(
            "create", key, lambda: self._adapter.create(path, data, self.retry.run), missing=False
        )
        if created:
            return True
        # A refusal may answer our own re-sent request: an attempt landed but its answer was
        # lost, and our retry (or the HTTP client, which re-sends an idempotent PUT on a
        # dropped keep-alive connection without telling anyone) then found the key taken. The
        # key is ours exactly when it holds our bytes; callers make values unique where it
        # matters (a ref-log entry names who, when, old and new: equal bytes are one change).
        try:
            return self.read(key) == data
        except NotFound:
            return False

    def exists(self, key: str) -> bool:
        return self._stat(key) is not None

    def size(self, key: str) -> int:
        return self._require(key).size

    def _names(self, what_key: str, *, recursive: bool) -> list[str]:
        base = self._path(what_key) if what_key else self.root
        return self._translate(
            "list",
            what_key,
            lambda: self._adapter.names(base, recursive=recursive, run=self.retry.run),
            missing=False,
        )

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        names = set()
        for full in self._names(prefix, recursive=False):
            full = full.rstrip("/")
            if not full.startswith(base + "/"):
                continue  # the folder itself, or a key that merely shares its name
            name = full[len(base) + 1 :]
            if "/" in name or name.startswith(TMP_PREFIX):
                continue
            if _is_valid(f"{prefix}/{name}" if prefix else name):
                names.add(name)
        return sorted(names)

    def walk(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix) if prefix else self.root
        keys = []
        for full in self._names(prefix, recursive=True):
            if not full.startswith(base + "/"):
                continue
            key = full[len(self.root) + 1 :]
            if key.rpartition("/")[2].startswith(TMP_PREFIX) or not _is_valid(key):
                continue
            keys.append(key)
        yield from sorted(keys)

    def delete(self, key: str) -> None:
        path = self._path(key)

        def remove() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(path)

        self._call("delete", key, remove)

    def age_seconds(self, key: str) -> float:
        found = self._require(key)
        if found.mtime is None:
            raise RemoteError(f"{self.url} does not report when {key} was written")
        return max(0.0, time.time() - found.mtime)

    def local_path(self, key: str) -> str | None:
        validate_key(key)
        return None

    def capped_reads(self) -> FsspecStorage:
        return self


def _is_valid(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidInput:
        return False
    return True


# --- opening by URL -------------------------------------------------------------------------------


def _coerce(options: dict[str, str]) -> dict[str, Any]:
    """Option values come from config files as text; 'true' and 'false' mean booleans."""
    flags = {"true": True, "false": False}
    return {key: flags.get(value.lower(), value) for key, value in options.items()}


def _missing_backend(scheme: str, url: str, exc: ImportError) -> MvcError:
    extra = _EXTRAS.get(scheme)
    hint = f"pip install 'mvc[{extra}]'" if extra else f"install the fsspec backend for {scheme}://"
    detail = str(exc) or type(exc).__name__
    return MvcError(f"cannot open {url}: the {scheme}:// backend is missing ({detail})", hint=hint)


def _file_url_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise UsageError(f"cannot open {url}: file:// URLs name a local folder (file:///path)")
    return unquote(parts.path)


def open_storage(url: str, options: dict[str, str] | None = None) -> Storage:
    """The storage a URL names: a folder path or file:// URL, or any fsspec URL (s3://, gs://...).

    ``options`` are passed to the fsspec filesystem (e.g. ``endpoint_url``); credentials come the
    way the backend normally finds them, never from the URL.
    """
    match = _URL.match(url)
    if not match:
        return LocalStorage(url)
    scheme = match.group(1).lower()
    if scheme in ("file", "local"):
        return LocalStorage(_file_url_path(url))
    shown = display_url(url)
    if urlsplit(url).password is not None:
        raise UsageError(
            f"refusing {shown}: the URL carries a password",
            hint="give the remote its credentials the way its backend expects them "
            "(AWS profile or environment, GCS application credentials)",
        )
    from fsspec.registry import get_filesystem_class

    try:
        cls = get_filesystem_class(scheme)
    except ImportError as exc:
        raise _missing_backend(scheme, shown, exc) from exc
    except ValueError as exc:
        raise UsageError(
            f"cannot open {shown}: unknown URL scheme {scheme}://",
            hint="use a folder path, or an s3://, gs://, az:// or memory:// URL",
        ) from exc
    s3 = scheme in ("s3", "s3a")
    given = dict(options or {})
    for key, value in given.items():
        check_option(key, value, storing=False)
    timeouts = {k: float(given.pop(k)) for k in TIMEOUT_OPTIONS if s3 and k in given}
    storage_class = given.pop(STORAGE_CLASS_OPTION, None) if s3 else None
    kwargs = {**(_s3_defaults(timeouts) if s3 else {}), **_coerce(given)}
    if storage_class:  # s3fs adds it to every request that takes it: PutObject, multipart
        kwargs["s3_additional_kwargs"] = {"StorageClass": storage_class}
    try:
        fs = cls(**kwargs)
    except ImportError as exc:
        raise _missing_backend(scheme, shown, exc) from exc
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"cannot open {shown}: bad storage option ({_reason(exc)})",
            hint="check the remote's options (`mvc remote -v`)",
        ) from exc
    if s3:
        fs.retries = 1  # s3fs' own retry loop: RetryPolicy is the one retry layer
    root = cls._strip_protocol(url.split("?", 1)[0])
    return FsspecStorage(fs, root, url=shown)


def probe_atomic_create(storage: Storage) -> bool:
    """Whether ``create_exclusive`` on this storage really refuses to overwrite.

    Creates a throw-away key twice: the second create must be refused and leave the first
    value. A backend whose adapter does not claim atomic creation is reported False outright,
    because a check-then-write passes a one-writer probe yet loses races.
    """
    if not storage.atomic_create:
        return False
    key = f"{PROBE_FOLDER}/{os.urandom(8).hex()}"
    try:
        first = storage.create_exclusive(key, b"first")
        second = storage.create_exclusive(key, b"second")
        return first and not second and storage.read(key) == b"first"
    finally:
        storage.delete(key)
