"""``mvc shell-init``: an ``mv`` shell function that forwards mvc's subcommands.

mvc never installs a program called ``mv``. The function forwards to ``mvc`` only when the first
word is an mvc subcommand *and* nothing of that name exists in the current folder; everything
else goes to the real ``mv`` (``command mv``), so ``mv models backup/`` still moves a folder.
"""

from __future__ import annotations

from mvc.errors import UsageError

SUBCOMMANDS = (
    "init",
    "commit",
    "status",
    "log",
    "show",
    "ls",
    "cat",
    "checkout",
    "branch",
    "tag",
    "models",
    "fsck",
    "gc",
    "repack",
    "config",
    "diff",
    "lineage",
    "find",
    "check-compat",
    "merge-adapter",
    "remote",
    "push",
    "pull",
    "fetch",
    "clone",
    "channel",
    "deploy",
    "promote",
    "switch",
    "rollback",
    "route",
    "export",
)

_POSIX = """mv() {
  case "$1" in
    %(words)s)
      if [ ! -e "$1" ] && [ ! -L "$1" ]; then command mvc "$@"; return; fi ;;
  esac
  command mv "$@"
}"""

_FISH = """function mv --wraps mv --description 'mv, or mvc for mvc subcommands'
    if test (count $argv) -gt 0; and contains -- $argv[1] %(words)s; and not test -e $argv[1]; and not test -L $argv[1]
        command mvc $argv
    else
        command mv $argv
    end
end"""


def shell_function(shell: str) -> str:
    if shell in ("bash", "zsh", "sh"):
        return _POSIX % {"words": "|".join(SUBCOMMANDS)}
    if shell == "fish":
        return _FISH % {"words": " ".join(SUBCOMMANDS)}
    raise UsageError(f"unknown shell {shell!r}", hint="choose bash, zsh or fish")
