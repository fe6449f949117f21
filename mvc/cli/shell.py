"""``mvc shell-init``: an ``mv`` shell function that forwards mvc's subcommands.

mvc never installs a program called ``mv``. The function forwards to ``mvc`` only when the first
word is an mvc subcommand *and* nothing of that name exists in the current folder; everything
else goes to the real ``mv`` (``command mv``), so ``mv models backup/`` still moves a folder.

Many dotfiles alias ``mv`` (``alias mv='mv -i'``). An alias is expanded before a function is
looked up, and ``mv() {`` itself is alias-expanded by bash and zsh, so the script reads the
alias's words first, removes the alias, and defines the function with the ``function``
keyword (never alias-expanded); the coreutils path then runs the alias's words, so ``-i``
keeps asking. Evaluating the script twice keeps the words found the first time. In fish an
alias is a function: it is copied to ``__mvc_user_mv`` and called for the coreutils path.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    "rm",
    "unbind",
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
"""The fallback list, used when the caller does not pass the app's own command names."""

# Words of an alias that only change how an interactive shell reads the line, not the command.
_PRECOMMANDS = "nocorrect|noglob|command|builtin|exec"

_BASH = """__mvc_mv_words() {
  local word
  __mvc_mv_cmd=(command)
  for word in "$@"; do
    case "$word" in %(pre)s) ;; *) __mvc_mv_cmd+=("$word") ;; esac
  done
  [ "${#__mvc_mv_cmd[@]}" -gt 1 ] || __mvc_mv_cmd=(command mv)
}
if [ -n "${BASH_ALIASES[mv]+x}" ]; then
  read -r -a __mvc_mv_alias <<< "${BASH_ALIASES[mv]}"
  __mvc_mv_words "${__mvc_mv_alias[@]}"
  unset __mvc_mv_alias
  unalias mv
elif [ -z "${__mvc_mv_cmd+x}" ]; then
  __mvc_mv_cmd=(command mv)
fi
unset -f __mvc_mv_words
function mv {
  case "$1" in
    %(words)s)
      if [ ! -e "$1" ] && [ ! -L "$1" ]; then command mvc "$@"; return; fi ;;
  esac
  "${__mvc_mv_cmd[@]}" "$@"
}"""

_ZSH = """if (( ${+aliases[mv]} )); then
  __mvc_mv_cmd=(command ${${(z)aliases[mv]}:#(%(pre)s)})
  (( ${#__mvc_mv_cmd} > 1 )) || __mvc_mv_cmd=(command mv)
  unalias mv
elif (( ! ${+__mvc_mv_cmd} )); then
  __mvc_mv_cmd=(command mv)
fi
function mv {
  case "$1" in
    %(words)s)
      if [ ! -e "$1" ] && [ ! -L "$1" ]; then command mvc "$@"; return; fi ;;
  esac
  "${__mvc_mv_cmd[@]}" "$@"
}"""

_SH = """unalias mv 2>/dev/null || true
mv() {
  case "$1" in
    %(words)s)
      if [ ! -e "$1" ] && [ ! -L "$1" ]; then command mvc "$@"; return; fi ;;
  esac
  command mv "$@"
}"""

_FISH = """if functions -q mv; and not functions -q __mvc_user_mv; and not functions mv | string match -q '*command mvc*'
    functions -c mv __mvc_user_mv
end
function mv --wraps mv --description 'mv, or mvc for mvc subcommands'
    if test (count $argv) -gt 0; and contains -- $argv[1] %(words)s; and not test -e $argv[1]; and not test -L $argv[1]
        command mvc $argv
    else if functions -q __mvc_user_mv
        __mvc_user_mv $argv
    else
        command mv $argv
    end
end"""


def shell_function(shell: str, commands: Iterable[str] = SUBCOMMANDS) -> str:
    """The script ``eval`` runs in ``shell`` to define ``mv``; ``commands`` are mvc's subcommands."""
    words = sorted(set(commands))
    if shell == "bash":
        return _BASH % {"words": "|".join(words), "pre": _PRECOMMANDS}
    if shell == "zsh":
        return _ZSH % {"words": "|".join(words), "pre": _PRECOMMANDS}
    if shell == "sh":
        return _SH % {"words": "|".join(words)}
    if shell == "fish":
        return _FISH % {"words": " ".join(words)}
    raise UsageError(f"unknown shell {shell!r}", hint="choose bash, zsh or fish")
