"""The test-only crash hook: ``crashpoint(name)`` marks a write point where a power cut may hit.

Set ``MVC_CRASH_AT=name`` (or ``name:n`` for the n-th time that point is reached) and the process
kills itself with SIGKILL when it gets there: no exception handler, ``finally`` or atexit runs,
exactly as if the machine lost power between two writes. The crash suite
(tests/faults/test_crash.py) runs each command once per point and checks that nothing was lost.

The variable is read once, at import; when it is unset, ``crashpoint`` is one global lookup and
a comparison, cheap enough for any loop. This module imports nothing of mvc's, so every layer
may call it. The points and the writes they sit between are listed in docs/reliability.md.
"""

from __future__ import annotations

import os
import signal

_ENV = "MVC_CRASH_AT"


def _parse(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    name, _sep, count = value.partition(":")
    try:
        return name, max(1, int(count)) if count else 1
    except ValueError:
        return name, 1


_TARGET = _parse(os.environ.get(_ENV))
_seen = 0


def crashpoint(name: str) -> None:
    """SIGKILL this process here if ``MVC_CRASH_AT`` names this point (and this is its n-th hit)."""
    if _TARGET is None or _TARGET[0] != name:
        return
    global _seen
    _seen += 1
    if _seen >= _TARGET[1]:
        os.kill(os.getpid(), signal.SIGKILL)
