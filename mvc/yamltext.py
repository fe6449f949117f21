"""Reading YAML mvc did not write: bounded, tag-free, duplicate-free, with line numbers.

``load_yaml`` is the one way mvc parses YAML (config files, YAML files shown by ``diff``). It
keeps four promises that ``yaml.safe_load`` does not:

- **No code, no exotic types.** Only plain mappings, sequences and the safe scalars
  (SafeLoader's resolver); ``!!python/...``, ``!!set`` and every other explicit tag on a
  collection is refused with its line, never constructed.
- **Bounded.** An alias costs nothing to parse but is expanded by every consumer, so ~750
  bytes of nested aliases ("billion laughs") become 10^9 nodes. With ``aliases=False``
  (config files: mvc never writes anchors, and a hand-written config has no need of them)
  any alias is refused; otherwise the document's size *with aliases expanded* is computed on
  the node graph (each node once) and refused above ``max_nodes``. Recursive aliases are
  refused too.
- **No silent overwrites.** A key given twice in one mapping is an error, not "the last wins".
- **Line numbers.** ``lines`` maps each dotted key path to the 1-based line it is on, so callers
  can say ``file:line: message``. ``finite=True`` refuses ``.nan`` and ``.inf``.

Errors are ``YamlProblem`` (a ValueError with ``line``); callers turn them into their own
error with the file's name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_FLOAT = "tag:yaml.org,2002:float"
#: Default bound on a document's expanded size (nodes): far above any real config or model
#: YAML, far below what stalls a process.
MAX_NODES = 100_000


class YamlProblem(ValueError):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass
class LoadedYaml:
    value: Any
    lines: dict[str, int] = field(default_factory=dict)  # "core.jobs" -> line

    def line_of(self, dotted: str) -> int | None:
        """The line of ``dotted``, or of its nearest enclosing key that has one."""
        while dotted:
            if dotted in self.lines:
                return self.lines[dotted]
            dotted = dotted.rpartition(".")[0]
        return None


def _line(node_or_mark: Any) -> int | None:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return mark.line + 1 if mark is not None and hasattr(mark, "line") else None


def load_yaml(
    text: str, *, aliases: bool = True, max_nodes: int = MAX_NODES, finite: bool = False
) -> LoadedYaml:
    """Parse one YAML document (see the module docstring); an empty document is ``None``."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if not aliases and self.check_event(yaml.AliasEvent):
                event = self.peek_event()  # type: ignore[no-untyped-call]  # (untyped in types-PyYAML)
                raise YamlProblem(
                    f"YAML aliases (*{event.anchor}) are not allowed here", _line(event)
                )
            return super().compose_node(parent, index)

    try:
        loader = Loader(text)  # checks the characters first
    except yaml.YAMLError as exc:
        raise YamlProblem(f"not valid YAML: {_one_line(str(exc))}", None) from exc
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            raise YamlProblem(
                f"not valid YAML: {exc.problem or exc.context}", _line(exc.problem_mark)
            ) from exc
        except yaml.YAMLError as exc:
            raise YamlProblem(f"not valid YAML: {_one_line(str(exc))}", None) from exc
        except RecursionError as exc:  # "[[[[..." thousands deep: refused, not a crash
            raise YamlProblem("nested too deeply", None) from exc
        if node is None:
            return LoadedYaml(None)
        _check_size(node, max_nodes)
        lines: dict[str, int] = {}
        try:
            value = _build(loader, node, "", lines, finite, {})
        except RecursionError as exc:
            raise YamlProblem("nested too deeply", _line(node)) from exc
        return LoadedYaml(value, lines)
    finally:
        loader.dispose()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_size(root: Any, max_nodes: int) -> None:
    """Refuse a graph whose expansion exceeds ``max_nodes``, or that contains itself."""
    import yaml

    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(c)] for c in _children(node))
            if total > max_nodes:
                raise YamlProblem(
                    f"YAML document too large once its aliases are expanded "
                    f"(more than {max_nodes} nodes)",
                    _line(node),
                )
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlProblem("YAML alias refers to itself (a recursive structure)", _line(node))
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1
            continue
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _build(
    loader: Any, node: Any, path: str, lines: dict[str, int], finite: bool, built: dict[int, Any]
) -> Any:
    import yaml

    if id(node) in built:  # an alias: the same value again (already checked and bounded)
        return built[id(node)]
    if isinstance(node, yaml.ScalarNode):
        try:
            value = loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:  # !!python/..., or any unknown tag
            raise YamlProblem(f"unsupported YAML tag {node.tag}", _line(node)) from exc
        # e.g. 2001-13-45; PyYAML's own constructors raise AttributeError or TypeError on some
        # malformed tagged scalars (`!!timestamp x`)
        except (yaml.YAMLError, ValueError, OverflowError, AttributeError, TypeError) as exc:
            kind = node.tag.rpartition(":")[2]
            raise YamlProblem(f"{node.value[:40]!r} is not a valid {kind}", _line(node)) from exc
        if finite and node.tag == _FLOAT and not math.isfinite(value):
            raise YamlProblem(f"{node.value!r} is not a finite number", _line(node))
        return value
    if isinstance(node, yaml.SequenceNode):
        if node.tag != _SEQ:
            raise YamlProblem(f"unsupported YAML tag {node.tag}", _line(node))
        out_list: list[Any] = []
        built[id(node)] = out_list
        for index, child in enumerate(node.value):
            item_line = _line(child)
            if item_line is not None:  # list items have lines too: `slo.bert.rules[1]`
                lines[f"{path}[{index}]"] = item_line
            out_list.append(_build(loader, child, f"{path}[{index}]", lines, finite, built))
        return out_list
    if node.tag != _MAP:
        raise YamlProblem(f"unsupported YAML tag {node.tag}", _line(node))
    out: dict[Any, Any] = {}
    built[id(node)] = out
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            raise YamlProblem(
                "only plain keys are allowed (no merge keys, no complex keys)", _line(key_node)
            )
        key = _build(loader, key_node, path, lines, finite, built)
        dotted = f"{path}.{key}" if path else str(key)
        if key in out:
            raise YamlProblem(
                f"duplicate key {dotted!r} (first on line {lines.get(dotted, '?')})",
                _line(key_node),
            )
        line = _line(key_node)
        if line is not None:
            lines[dotted] = line
        out[key] = _build(loader, value_node, dotted, lines, finite, built)
    return out
