"""Where output goes: data to stdout, everything for people to stderr.

Rich is imported only when something is rendered for a person. Progress bars appear only on
a terminal; ``NO_COLOR`` is honoured (rich reads it).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from mvc.progress import NullProgress, Progress


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _stdout_console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


class Output:
    def __init__(self, *, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet

    # data (stdout)
    def json(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def line(self, text: str = "") -> None:
        sys.stdout.write(text + "\n")

    def write_bytes(self, data: bytes) -> None:
        sys.stdout.buffer.write(data)

    def rich(self, renderable: Any) -> None:
        _stdout_console().print(renderable)

    # people (stderr)
    def info(self, text: str) -> None:
        if not self.quiet:
            _stderr_console().print(text)

    def warn(self, text: str) -> None:
        _stderr_console().print(f"[yellow]warning:[/yellow] {text}")

    def error(self, text: str, hint: str | None = None) -> None:
        console = _stderr_console()
        console.print(f"[bold red]error:[/bold red] {_escape(text)}")
        if hint:
            console.print(f"[dim]hint:[/dim] {_escape(hint)}")

    def progress(self) -> Progress:
        if self.quiet or not sys.stderr.isatty() or os.environ.get("MVC_NO_PROGRESS"):
            return NullProgress()
        return RichProgress()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class RichProgress:
    """One bar at a time on stderr; safe to advance from worker threads."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None

    def start(self, description: str, total: int | None) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.finish()
        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=_stderr_console(),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(description, total=total)

    def advance(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
