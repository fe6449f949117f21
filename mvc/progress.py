"""How long-running operations report progress without printing.

Ops accept a ``Progress`` and call it; the CLI passes a rich progress bar on a terminal and
``NullProgress`` elsewhere. Calls may come from worker threads.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, description: str, total: int | None) -> None: ...

    def advance(self, amount: int) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def finish(self) -> None:
        pass
