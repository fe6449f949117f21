"""docs/cli.md, generated from the real command definitions: ``python -m mvc.cli.docs FILE``.

Plain Markdown: no HTML entities, usage lines and every help text's examples in fenced
``console`` blocks, options with the metavars ``--help`` shows (``settle_metavars``). The
command tree is read from the click group Typer builds, so a command another module registers
is documented without touching this file. tests/cli/test_docs.py checks the file is current.
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any

from typer.main import get_command

from mvc.cli.common import settle_metavars

_EXAMPLES = re.compile(r"^(Examples?):\s*(.*)$", re.DOTALL)


def _plain(text: str) -> str:
    """Help text as Markdown: Rich's escaped brackets unescaped, nothing HTML-escaped."""
    return text.replace("\\[", "[").replace("\\]", "]")


def _usage(path: str, command: Any) -> str:
    pieces = [path]
    if any(p.param_type_name == "option" for p in command.params):
        pieces.append("[OPTIONS]")
    for param in command.params:
        if param.param_type_name != "argument":
            continue
        name = param.metavar or (param.name or "").upper()
        name += "..." if param.nargs == -1 else ""
        pieces.append(name if param.required else f"[{name}]")
    if getattr(command, "commands", None):
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def _help_sections(text: str) -> tuple[list[str], list[str]]:
    """(paragraphs, example command lines) of a help text."""
    paragraphs: list[str] = []
    examples: list[str] = []
    for block in re.split(r"\n\s*\n", inspect.cleandoc(text or "")):
        match = _EXAMPLES.match(block.strip())
        if match:
            examples += [line.strip() for line in match.group(2).splitlines() if line.strip()]
        elif block.strip():
            paragraphs.append(" ".join(line.strip() for line in block.splitlines()))
    return paragraphs, examples


def _option_line(param: Any) -> str:
    if param.param_type_name == "argument":
        names = param.metavar or (param.name or "").upper()
    else:
        names = ", ".join([*param.opts, *param.secondary_opts])
        names += f" {param.metavar}" if param.metavar else ""
    help_text = _plain(param.help or "").strip()
    extras = []
    if param.param_type_name == "argument" and param.required:
        extras.append("required")
    default = param.default
    if (
        param.param_type_name == "option"
        and not getattr(param, "is_flag", False)
        and default not in (None, "", [], ())
        and getattr(param, "show_default", True) is not False
    ):
        extras.append(f"default: {default}")
    tail = f" ({'; '.join(extras)})" if extras else ""
    return f"* `{names}`: {help_text}{tail}".rstrip(": ")


def _command(path: str, command: Any, level: int, out: list[str]) -> None:
    paragraphs, examples = _help_sections(_plain(command.help or ""))
    out += [f"{'#' * level} `{path}`", ""]
    for paragraph in paragraphs:
        out += [paragraph, ""]
    out += ["**Usage**:", "", "```console", f"$ {_usage(path, command)}", "```", ""]
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    options = [p for p in command.params if p.param_type_name == "option"]
    if arguments:
        out += ["**Arguments**:", ""]
        out += [_option_line(param) for param in arguments]
        out.append("")
    out += ["**Options**:", ""]
    for param in options:
        out.append(_option_line(param))
    out += ["* `-h, --help`: Show this message and exit.", ""]
    if examples:
        out += ["**Examples**:", "", "```console"]
        out += [f"$ {line}" for line in examples]
        out += ["```", ""]
    subcommands = getattr(command, "commands", {})
    if subcommands:
        out += ["**Commands**:", ""]
        for name, sub in subcommands.items():
            summary = _help_sections(_plain(sub.help or ""))[0]
            out.append(f"* `{name}`: {summary[0] if summary else ''}".rstrip(": "))
        out.append("")
        for name, sub in subcommands.items():
            _command(f"{path} {name}", sub, level + 1 if level > 1 else 2, out)


def render() -> str:
    """The whole command reference, as Markdown."""
    from mvc.cli.main import app

    root = get_command(app)
    settle_metavars(root)
    out = ["# mvc command reference", ""]
    _command("mvc", root, 2, out)
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m mvc.cli.docs FILE")
    with open(sys.argv[1], "w", encoding="utf-8") as handle:
        handle.write(render())
