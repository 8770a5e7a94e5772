"""``$VAR`` / ``${VAR}`` template substitution (the CLI's ``-e VAR=VALUE`` / ``--use-env``).

``$$SCONE::…$$`` references and a literal ``$$`` are left alone; a variable
without a value is an error naming it with its line and column (SCONE:
"Value for variable $SESSION is missing at line 3 column 7").  All missing
variables are reported at once.  Comments are text for people: a ``$VAR`` in
a YAML comment is neither substituted nor required (when the template parses
as YAML before substitution; otherwise every ``$VAR`` counts).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Mapping

import yaml

from cloister.errors import TemplateError

_TOKEN_RE = re.compile(
    r"(?P<ref>\$\$SCONE::[^$]*\$\$)"
    r"|(?P<dollars>\$\$)"
    r"|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def substitute_variables(text: str, variables: Mapping[str, str]) -> str:
    """Replace ``$VAR`` and ``${VAR}`` in ``text`` with ``variables[VAR]``."""
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        if name is None:
            return match.group(0)
        if name in variables:
            return variables[name]
        line = text.count("\n", 0, match.start()) + 1
        column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
        missing.append(f"Value for variable ${name} is missing at line {line} column {column}")
        return match.group(0)

    in_value = _value_spans(text)
    result = _TOKEN_RE.sub(lambda m: replace(m) if in_value(m.start()) else m.group(0), text)
    if missing:
        raise TemplateError(
            missing[0] + ": pass it with -e NAME=VALUE or --use-env", details=missing[1:]
        )
    return result


def _value_spans(text: str) -> Callable[[int], bool]:
    """Whether an offset of ``text`` lies in a YAML scalar (a key or a value), not a comment."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lambda offset: True
    starts: list[int] = []
    ends: list[int] = []
    stack = [root] if root is not None else []
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:  # aliases share nodes: visit each once
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            starts.append(node.start_mark.index)
            ends.append(node.end_mark.index)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(item for pair in node.value for item in pair)
    spans = sorted(zip(starts, ends, strict=True))
    first = [start for start, _ in spans]

    def inside(offset: int) -> bool:
        i = bisect.bisect_right(first, offset) - 1
        return i >= 0 and offset < spans[i][1]

    return inside


def variable_names(text: str) -> list[str]:
    """The template variables ``text`` uses, in order of first use."""
    names = [m.group("braced") or m.group("bare") for m in _TOKEN_RE.finditer(text)]
    return list(dict.fromkeys(n for n in names if n))
