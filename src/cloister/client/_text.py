"""Editing a session's YAML *text* on the client: set ``name`` / ``predecessor``.

The CAS stores the text it is sent, so the client changes only what it must:
one top-level ``key: value`` entry is replaced (with any indented
continuation lines) or inserted, and every other byte stays as written —
comments, order, line endings.  The result is always re-parsed with the
policy loader, which checks that the edit says what was meant.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from cloister import errors, policy

#: a top-level mapping key at column 0, optionally quoted: ``name:``, ``"name":``
_KEY_LINE = re.compile(
    r"""(?P<q>["']?)(?P<key>[A-Za-z_][A-Za-z0-9_-]*)(?P=q)[ \t]*:(?:[ \t]|\r?$)"""
)


def _entry_end(lines: list[str], start: int) -> int:
    """End (exclusive) of the top-level entry starting at ``start``: its indented lines."""
    end = start + 1
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if not line.strip():
            continue  # blank lines belong to the entry only if indented lines follow
        if line[0] in " \t":
            end = i + 1
        else:
            break
    return end


def _top_level_keys(lines: list[str]) -> dict[str, int]:
    keys: dict[str, int] = {}
    for i, line in enumerate(lines):
        m = _KEY_LINE.match(line)
        if m:
            keys.setdefault(m.group("key"), i)
    return keys


def set_top_level_key(text: str, key: str, value: str) -> str:
    """``text`` with the top-level ``key`` set to the string ``value`` (double-quoted).

    An existing entry is replaced in place; otherwise the entry goes right
    after ``name`` (or before the first top-level key).
    """
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    entry = f"{key}: {json.dumps(value)}{newline}"
    keys = _top_level_keys(lines)
    if key in keys:
        start = keys[key]
        return "".join([*lines[:start], entry, *lines[_entry_end(lines, start) :]])
    if "name" in keys and key != "name":
        at = _entry_end(lines, keys["name"])
    elif keys:
        at = min(keys.values())
    else:
        raise errors.PolicyError(
            f"cannot set {key!r}: the session is not a YAML block mapping",
            details=[f"add a line '{key}: ...' at the top level yourself"],
        )
    if at > 0 and not lines[at - 1].endswith("\n"):
        lines[at - 1] += newline
    return "".join([*lines[:at], entry, *lines[at:]])


def prepare_session_text(
    text: str,
    *,
    variables: Mapping[str, str] | None = None,
    name: str | None = None,
    predecessor: str | None = None,
) -> tuple[str, policy.Session]:
    """Template values, then ``name`` / ``predecessor`` set; the text to send and its parse.

    Raises :class:`~cloister.errors.PolicyError` (with positions) for an
    invalid session, before anything is sent.
    """
    if variables is not None:
        text = policy.substitute_variables(text, variables)
    if name is not None:
        text = set_top_level_key(text, "name", name)
    if predecessor is not None:
        text = set_top_level_key(text, "predecessor", predecessor)
    session = policy.load_session(text)
    if name is not None and session.name != name:
        raise errors.PolicyError(f"could not set the session name to {name!r}")
    if predecessor is not None and session.predecessor != predecessor:
        raise errors.PolicyError("could not set the session's predecessor")
    return text, session
