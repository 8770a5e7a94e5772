"""``$VAR`` / ``${VAR}`` template substitution (the CLI's ``-e VAR=VALUE`` / ``--use-env``).

``$$SCONE::…$$`` references and a literal ``$$`` are left alone; a variable
without a value is an error naming it with its line and column (SCONE:
"Value for variable $SESSION is missing at line 3 column 7").  All missing
variables are reported at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

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

    result = _TOKEN_RE.sub(replace, text)
    if missing:
        raise TemplateError(
            missing[0] + ": pass it with -e NAME=VALUE or --use-env", details=missing[1:]
        )
    return result


def variable_names(text: str) -> list[str]:
    """The template variables ``text`` uses, in order of first use."""
    names = [m.group("braced") or m.group("bare") for m in _TOKEN_RE.finditer(text)]
    return list(dict.fromkeys(n for n in names if n))
