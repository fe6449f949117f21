"""Advisory locks on a local store, with a wait and a timeout.

``flock`` locks die with their process, so a killed command never leaves a stale lock behind.
Two locks exist: ``refs`` (exclusive, held while refs change) and ``objects`` (shared by every
writer of objects, exclusive for gc, so gc never deletes while someone writes).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mvc.errors import LockTimeout, environment_error

DEFAULT_TIMEOUT = 60.0


@contextmanager
def hold(path: str, *, shared: bool = False, timeout: float = DEFAULT_TIMEOUT) -> Iterator[None]:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # a read-only or full store: every writer starts here
        raise environment_error(exc, f"the lock file {path}") from exc
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    deadline = time.monotonic() + timeout
    delay = 0.005
    try:
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    name = os.path.basename(path)
                    raise LockTimeout(
                        f"the store's {name} lock is held by another mvc process "
                        f"(waited {timeout:g}s)",
                        hint="wait for it to finish, or pass a longer --lock-timeout",
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        yield
    finally:
        os.close(fd)  # closing releases the lock
