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

from collections.abc import Callable, Iterable
from typing import Any

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


# --- completion -----------------------------------------------------------------------------------
#
# `mvc completion SHELL` prints a script that asks `mvc __complete WORD...` (the words after
# `mvc`, the last one being completed) for candidates, one per line. `__complete` is answered in
# cli/main.run before Typer parses anything: it lists command names without converting the
# commands, converts only the one command being completed, and reads names straight from the
# store's refs, so it imports nothing heavy (no numpy, fsspec, safetensors).

_COMPLETION_BASH = r"""_mvc_complete() {
  local line="${COMP_LINE:0:COMP_POINT}" cur="${COMP_WORDS[COMP_CWORD]}" full
  local -a words
  read -r -a words <<< "$line"
  [[ "$line" == *" " ]] && words+=("")
  full="${words[${#words[@]}-1]}"
  local prefix="${full%"$cur"}" candidate
  local IFS=$'\n'
  COMPREPLY=()
  for candidate in $(command mvc __complete "${words[@]:1}" 2>/dev/null); do
    COMPREPLY+=("${candidate#"$prefix"}")
  done
}
complete -o default -o nospace -F _mvc_complete mvc"""

_COMPLETION_ZSH = r"""_mvc() {
  local -a candidates
  candidates=("${(@f)$(command mvc __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
  if (( ${#candidates} )) && [[ -n "${candidates[1]}" ]]; then
    compadd -Q -S '' -- "${candidates[@]}"
  else
    _files
  fi
}
compdef _mvc mvc"""

_COMPLETION_FISH = r"""function __mvc_complete
    set -l tokens (commandline -opc) (commandline -ct)
    command mvc __complete $tokens[2..-1] 2>/dev/null
end
complete -c mvc -a '(__mvc_complete)'"""


def completion_script(shell: str) -> str:
    """What ``eval`` (bash, zsh) or ``source`` (fish) runs to complete ``mvc``."""
    scripts = {"bash": _COMPLETION_BASH, "zsh": _COMPLETION_ZSH, "fish": _COMPLETION_FISH}
    if shell not in scripts:
        raise UsageError(f"unknown shell {shell!r}", hint="choose bash, zsh or fish")
    return scripts[shell]


_GLOBAL = ("-C", "--lock-timeout", "--version", "--help")
_CHOICES = {
    "shell": ("bash", "zsh", "fish"),
    "bump": ("major", "minor", "patch", "auto"),
}
_SPECS = {"spec", "a", "b", "base", "adapter"}


def complete(words: list[str], build_app: Callable[[Callable[[str], bool]], Any]) -> list[str]:
    """Candidates for the last of ``words`` (the command line after ``mvc``)."""
    from typer.main import get_command

    done, cur = words[:-1], (words[-1] if words else "")
    index, directory = 0, None
    while index < len(done) and done[index].startswith("-"):
        if done[index] in ("-C", "--lock-timeout"):
            directory = done[index + 1] if done[index] == "-C" and index + 1 < len(done) else None
            index += 2
            continue
        index += 1
    rest = done[index:]
    if not rest:
        if done and done[-1] in ("-C", "--lock-timeout"):
            return []  # a folder, or a number: the shell's own completion
        if cur.startswith("-"):
            return [o for o in _GLOBAL if o.startswith(cur)]
        commands = getattr(get_command(build_app(lambda name: True)), "commands", {})
        names = [n for n, c in commands.items() if not getattr(c, "hidden", False)]
        return sorted(n for n in names if n.startswith(cur) and not n.startswith("_"))
    name = rest[0]
    command = getattr(get_command(build_app(lambda n: n == name)), "commands", {}).get(name)
    args, path = rest[1:], [name]
    subcommands = getattr(command, "commands", None)
    if command is not None and subcommands is not None:
        if not args:
            return sorted(n for n in subcommands if n.startswith(cur))
        command, args, path = subcommands.get(args[0]), args[1:], [name, args[0]]
    if command is None:
        return []
    options = {o: p for p in command.params for o in (*p.opts, *p.secondary_opts) if o[:1] == "-"}
    positional: list[str] = []
    expecting = None
    position = 0
    while position < len(args):
        word = args[position]
        param = options.get(word.split("=", 1)[0]) if word.startswith("-") else None
        if param is not None and not getattr(param, "is_flag", False) and "=" not in word:
            if position == len(args) - 1:
                expecting = param
            position += 2
            continue
        if not word.startswith("-"):
            positional.append(word)
        position += 1
    if expecting is None and cur.startswith("-"):
        return sorted(o for o in [*options, "--help"] if o.startswith("--") and o.startswith(cur))
    if expecting is not None:
        target = expecting
    else:
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        if len(positional) >= len(arguments):
            return []
        target = arguments[len(positional)]
    values = _values(target.name or "", path, positional, args, directory, cur)
    return sorted(v for v in values if v.startswith(cur))


def _values(
    kind: str,
    path: list[str],
    positional: list[str],
    args: list[str],
    directory: str | None,
    cur: str,
) -> list[str]:
    if kind in _CHOICES:
        return list(_CHOICES[kind])
    repo = _store(directory)
    if repo is None:
        return []
    model = positional[0] if positional else None
    if "--model" in args[:-1]:
        model = args[args.index("--model") + 1]
    models: list[str] = repo.refs.models()
    if kind in ("remote",) or (path[0] == "remote" and kind == "name" and path[-1] != "add"):
        return _remote_names(repo)
    if kind == "model":
        return models
    if kind in _SPECS:
        if "@" not in cur:
            return models
        model, _, _ = cur.partition("@")
        return [f"{model}@{n}" for n in _ref_names(repo, model, None)]
    if model is None:
        return []
    kinds = {
        "rev": None,
        "target": None,
        "channel": ("channels",),
        "branch": ("heads",),
        "delete": ("tags",) if path[0] == "tag" else ("heads",),
    }
    if kind not in kinds:
        return []
    return _ref_names(repo, model, kinds[kind])


def _store(directory: str | None) -> Any:
    import os

    from mvc.errors import MvcError
    from mvc.repo import Repo

    try:
        explicit = os.environ.get("MVC_DIR")
        if explicit:
            return Repo(explicit)
        return Repo.discover(directory or ".")
    except (MvcError, OSError):
        return None


def _ref_names(repo: Any, model: str, kinds: tuple[str, ...] | None) -> list[str]:
    from mvc.errors import MvcError

    try:
        return sorted(
            {ref.name for kind in kinds or (None,) for ref in repo.refs.list_refs(kind, model)}
        )
    except MvcError:
        return []


def _remote_names(repo: Any) -> list[str]:
    names = {key.split(".")[1] for key in repo.config.items() if key.startswith("remote.")}
    return sorted(names)
