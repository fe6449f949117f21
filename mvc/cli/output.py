r"""Where output goes: data to stdout, everything for people to stderr.

Rich is imported only when something is rendered for a person. Progress bars appear only on
a terminal; ``NO_COLOR`` is honoured (rich reads it).

Everything printed passes through here, and here alone it is made safe, because much of it
comes from other people (a remote's authors, messages, params, paths, ref names):

- **Human output**: control characters (C0 but newline and tab, DEL, C1) and invisible or
  direction-changing characters (bidi overrides and isolates, zero-width marks) are shown
  escaped (``\x1b``, ``\u202e``), so text cannot move the cursor, retitle the terminal or
  reorder what is shown; rich markup in messages is shown, not interpreted.
- **JSON**: exact values, valid JSON: the same characters are written as ``\uXXXX``
  escapes (the parsed value is unchanged), and a non-finite number becomes ``null``.
- **Both**: a password in a URL (``scheme://user:password@``) is shown as ``***``.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from typing import Any

from mvc.progress import NullProgress, Progress

#: Characters that never reach the terminal as they are.
_UNSAFE = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]"
)
#: The password part of a URL's user info (``://user:password@``), inside one JSON string.
_PASSWORD = re.compile(r'(?<=://)([^/@\s:"]*):[^/@\s"]+@')


def _shown(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def redact(text: str) -> str:
    """Passwords in URLs replaced by ``***``."""
    return _PASSWORD.sub(r"\1:***@", text)


def safe_text(text: str) -> str:
    """Untrusted text made harmless for a terminal (see the module docstring)."""
    return _UNSAFE.sub(lambda m: _shown(m.group()), redact(text))


def _json_safe(value: Any) -> Any:
    """Non-finite floats (which JSON cannot carry) as None; everything else unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def encode_json(value: Any) -> str:
    """``--json`` text: valid JSON whose parsed value is ``value`` (credentials redacted)."""
    text = json.dumps(
        _json_safe(value), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False
    )
    # Outside strings JSON is ASCII, so these characters sit inside strings: as \uXXXX
    # escapes they parse back to themselves.
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", redact(text))


class _Sanitised:
    """A rich renderable whose text segments pass ``safe_text`` (rich's own control codes,
    the styles and cursor moves it emits, are kept)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.segment import Segment

        for segment in console.render(self.inner, options):
            if segment.control:
                yield segment
            else:
                yield Segment(safe_text(segment.text), segment.style)


def _sanitising(console: Any) -> Any:
    from rich.console import RenderHook

    class Hook(RenderHook):
        def process_renderables(self, renderables: list[Any]) -> list[Any]:
            return [_Sanitised(r) for r in renderables]

    console.push_render_hook(Hook())
    return console


def _stderr_console() -> Any:
    from rich.console import Console

    return _sanitising(Console(stderr=True, highlight=False, soft_wrap=True))


def _stdout_console(width: int | None = None) -> Any:
    from rich.console import Console

    return _sanitising(Console(highlight=False, soft_wrap=True, width=width))


#: ANSI SGR codes of the colours data lines use (as git does: green added, red removed).
COLOURS = {"green": "32", "red": "31", "yellow": "33", "cyan": "36", "bold": "1", "dim": "2"}


def colour_wanted() -> bool:
    """Colour for stdout: a terminal, and neither ``NO_COLOR`` (https://no-color.org) nor a dumb
    terminal; ``FORCE_COLOR`` turns it on anyway (for pagers that pass colour through)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


class Output:
    def __init__(self, *, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet

    # data (stdout)
    def json(self, value: Any) -> None:
        sys.stdout.write(encode_json(value) + "\n")
        sys.stdout.flush()

    def line(self, text: str = "", colour: str | None = None) -> None:
        """A line of data; ``colour`` (a key of ``COLOURS``) only on a terminal, never with
        ``NO_COLOR`` set or ``TERM=dumb``."""
        shown = safe_text(text)
        if colour and colour_wanted():
            shown = f"\x1b[{COLOURS[colour]}m{shown}\x1b[0m"
        sys.stdout.write(shown + "\n")

    def parts(self, *pieces: tuple[str, str | None]) -> None:
        """A line of data made of (text, colour or None) pieces, each made safe."""
        wanted = colour_wanted()
        shown = [
            f"\x1b[{COLOURS[c]}m{safe_text(t)}\x1b[0m" if c and wanted else safe_text(t)
            for t, c in pieces
        ]
        sys.stdout.write("".join(shown) + "\n")

    def write_bytes(self, data: bytes) -> None:
        sys.stdout.buffer.write(data)

    def rich(self, renderable: Any, *, wide: bool = False) -> None:
        """A rich renderable on stdout; ``wide``: into a pipe or file, lines are never cut."""
        width = 10_000 if wide and not sys.stdout.isatty() else None
        _stdout_console(width).print(renderable)

    # people (stderr)
    def info(self, text: str, *, lead: str | None = None) -> None:
        """A line for people; ``lead`` is shown in bold before it (both are made safe)."""
        if self.quiet:
            return
        if _plain_stderr():
            _plain_lines(f"{lead} {text}" if lead else text)
            return
        bold = f"[bold]{_escape(lead)}[/bold] " if lead else ""
        _stderr_console().print(bold + _escape(text))

    def warn(self, text: str) -> None:
        if _plain_stderr():
            _plain_lines(f"warning: {text}")
            return
        _stderr_console().print(f"[yellow]warning:[/yellow] {_escape(text)}")

    def error(self, text: str, hint: str | None = None) -> None:
        if _plain_stderr():
            _plain_lines(f"error: {text}" + (f"\nhint: {hint}" if hint else ""))
            return
        console = _stderr_console()
        console.print(f"[bold red]error:[/bold red] {_escape(text)}")
        if hint:
            console.print(f"[dim]hint:[/dim] {_escape(hint)}")

    def progress(self) -> Progress:
        if self.quiet or not sys.stderr.isatty() or os.environ.get("MVC_NO_PROGRESS"):
            return NullProgress()
        return RichProgress()


def _plain_stderr() -> bool:
    """Whether stderr is no terminal and nothing asks for styles there: rich would write the
    bare text, so it is written directly (importing rich is 15-45 ms of a command's start-up,
    a tenth of a no-op ``commit``; a script or CI log never sees the difference)."""
    if os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE"):
        return False
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def _plain_lines(text: str) -> None:
    """``text`` on stderr as rich writes it to a file: made safe, tabs expanded, no styles."""
    sys.stderr.write("".join(line.expandtabs(8) + "\n" for line in safe_text(text).split("\n")))
    sys.stderr.flush()


def _escape(text: str) -> str:
    """Text for rich's markup: made safe first (rich would drop some control characters
    silently), then its brackets escaped so it is shown, not interpreted."""
    from rich.markup import escape

    return escape(safe_text(text))


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

        class BinarySpeed(TransferSpeedColumn):  # rich's is decimal (MB/s): one unit system
            def render(self, task: Any) -> Any:
                from rich.text import Text

                speed = task.finished_speed or task.speed
                shown = f"{human_size(int(speed))}/s" if speed is not None else "?"
                return Text(shown, style="progress.data.speed")

        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(binary_units=True),
            BinarySpeed(),
            TimeRemainingColumn(),
            console=_stderr_console(),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(safe_text(description), total=total)

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
