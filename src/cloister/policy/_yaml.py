"""Strict YAML reading with positions.

The session text is composed into :class:`Node` objects that remember their
line and column.  Refused here, before any interpretation: anchors and
aliases (the "billion laughs" bomb needs them, and a security policy has no
use for them), duplicate keys, non-scalar or non-string keys, tags other than
YAML's own, and more than one document.

Two loaders, one outcome.  libyaml's (``yaml.CSafeLoader``, C) composes a
session in a twentieth of the time of PyYAML's pure-Python one, so it reads
every text that is plain: printable, no anchor or alias, valid YAML.  Any
other text — and any text libyaml refuses — is read again by the strict
pure-Python loader, whose checks and messages are the ones a user sees (they
are pinned by tests).  Both give the same node tree (same values, same
marks), and :func:`_convert` applies the same checks to it.  libyaml refuses
nesting beyond its own limit (10,000 levels) before composing, so its
recursive composer cannot exhaust the stack.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import yaml
from yaml.events import AliasEvent, NodeEvent
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from cloister.errors import PolicyError

#: deepest nesting accepted; real sessions are 5-6 levels deep
MAX_DEPTH = 32
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class Mark(NamedTuple):
    line: int  # 1-based
    column: int  # 1-based
    #: where the text came from when it is not the session itself (an imported fragment)
    source: str = ""

    def __str__(self) -> str:
        where = f"{self.source} " if self.source else ""
        return f"{where}line {self.line} column {self.column}"


class Node(NamedTuple):
    """A YAML value with its position.  ``value`` is a scalar, list[Node] or dict[str, Entry].

    (Node, Mark and Entry are named tuples, not dataclasses: a session has a few
    dozen of each, and a tuple is made in a third of the time.)"""

    value: Any
    mark: Mark
    kind: str  # "scalar" | "seq" | "map"
    raw: str | None = None  # a scalar's text as written
    #: offsets of the node's text in the document it was parsed from
    span: tuple[int, int] = (0, 0)


class Entry(NamedTuple):
    key_mark: Mark
    node: Node


def _mark(start_mark: Any, source: str = "") -> Mark:
    return Mark(start_mark.line + 1, start_mark.column + 1, source)


#: SCONE's ``secret_config.store_in`` tags (0.3.10): the only non-YAML tags a session may use
SCONE_TAGS = ("!cas", "!akv")


class _StrictLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise PolicyError(
                f"YAML alias *{event.anchor} at {_mark(event.start_mark)}: "
                "anchors and aliases are not allowed in a session"
            )
        event = self.peek_event()  # type: ignore[no-untyped-call]
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise PolicyError(
                f"YAML anchor &{anchor} at {_mark(event.start_mark)}: "
                "anchors and aliases are not allowed in a session"
            )
        return super().compose_node(parent, index)


class _FastLoader(yaml.CSafeLoader):
    """libyaml's parser and composer, PyYAML's safe constructor (plain texts only)."""


def _plain_events(text: str) -> bool:
    """Whether ``text`` has no anchor and no alias (scanned by libyaml: events only)."""
    for event in yaml.parse(text, Loader=_FastLoader):
        if isinstance(event, AliasEvent) or (
            isinstance(event, NodeEvent) and event.anchor is not None
        ):
            return False
    return True


def _fast(text: str, source: str) -> Node | None:
    """The tree of a plain ``text`` read by libyaml, or None: read it with the strict
    loader (see the module doc)."""
    if yaml.reader.Reader.NON_PRINTABLE.search(text):
        return None
    try:
        if ("&" in text or "*" in text) and not _plain_events(text):
            return None
        loader = _FastLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except (yaml.YAMLError, UnicodeError):
        return None
    if root is None:
        return None
    return _convert(root, loader, 0, source)


def parse(text: str, source: str = "") -> Node:
    """Compose ``text`` into a :class:`Node` tree; raise :class:`PolicyError` on bad YAML.

    ``source`` names where ``text`` comes from in every position (empty: the session).
    """
    fast = _fast(text, source)
    if fast is not None:
        return fast
    return _strict(text, source)


def _strict(text: str, source: str) -> Node:
    """:func:`parse` by the strict pure-Python loader."""
    try:
        # the reader checks for control characters already when it is built
        loader = _StrictLoader(text)
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        raise PolicyError(
            f"invalid YAML at line {line} column {column}: "
            f"control character #x{err.character:04x} is not allowed",
            details=["remove control characters from the session text"],
        ) from None
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at {_mark(mark, source)}" if mark is not None else ""
        problem = err.problem or err.context or "invalid YAML"
        raise PolicyError(f"invalid YAML{where}: {problem}") from None
    except yaml.YAMLError as err:
        raise PolicyError(f"invalid YAML: {err}") from None
    finally:
        loader.dispose()
    if root is None:
        raise PolicyError("the session is empty: expected a mapping with at least 'name'")
    return _convert(root, loader, 0, source)


_STR_TAG = "tag:yaml.org,2002:str"


def _convert(node: Any, loader: yaml.SafeLoader | _FastLoader, depth: int, source: str) -> Node:
    start = node.start_mark
    mark = Mark(start.line + 1, start.column + 1, source)
    span = (start.index, node.end_mark.index)
    if depth > MAX_DEPTH:
        raise PolicyError(f"nesting deeper than {MAX_DEPTH} levels at {mark}")
    tag = node.tag
    if tag in SCONE_TAGS:
        # SCONE's secret backend tags: a tagged scalar reads as the tag, a tagged mapping as
        # {"!akv": mapping} so that the reader sees which backend was chosen
        if isinstance(node, ScalarNode) and not node.value:
            return Node(tag, mark, "scalar", tag, span)
        inner = _convert(_untagged(node), loader, depth + 1, source)
        return Node({tag: Entry(mark, inner)}, mark, "map", None, span)
    if isinstance(node, ScalarNode):
        if tag == _STR_TAG:
            value = node.value  # what the safe constructor makes of a str scalar
        elif not tag.startswith("tag:yaml.org,2002:"):
            raise PolicyError(f"unsupported YAML tag {tag} at {mark}")
        else:
            try:
                value = loader.construct_object(node, deep=True)
            except yaml.YAMLError:
                raise PolicyError(f"invalid scalar at {mark}") from None
            if not isinstance(value, str | int | float | bool | type(None)):
                # timestamps and binary: keep the text as written
                value = node.value
        if isinstance(value, str) and _SURROGATE_RE.search(value):
            raise PolicyError(f"invalid character at {mark}: a lone UTF-16 surrogate "
                              "(\\ud800-\\udfff) is not text; remove it")
        return Node(value, mark, "scalar", node.value, span)
    depth += 1
    if isinstance(node, SequenceNode):
        items = [_convert(item, loader, depth, source) for item in node.value]
        return Node(items, mark, "seq", None, span)
    if isinstance(node, MappingNode):
        entries: dict[str, Entry] = {}
        for key_node, value_node in node.value:
            key_start = key_node.start_mark
            key_mark = Mark(key_start.line + 1, key_start.column + 1, source)
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                raise PolicyError(f"unsupported mapping key at {key_mark}: keys must be names")
            key = key_node.value
            if _SURROGATE_RE.search(key):
                raise PolicyError(f"invalid character in a key at {key_mark}: a lone UTF-16 "
                                  "surrogate is not text; remove it")
            if key in entries:
                first = entries[key].key_mark
                raise PolicyError(f"duplicate key {key!r} at {key_mark} (first at {first})")
            entries[key] = Entry(key_mark, _convert(value_node, loader, depth, source))
        return Node(entries, mark, "map", None, span)
    raise PolicyError(f"unsupported YAML node at {mark}")


def _untagged(node: Any) -> Any:
    """A copy of a tagged YAML node with its plain tag (``!akv {…}`` → ``{…}``)."""
    plain_tag = {
        ScalarNode: "tag:yaml.org,2002:str",
        SequenceNode: "tag:yaml.org,2002:seq",
        MappingNode: "tag:yaml.org,2002:map",
    }[type(node)]
    return type(node)(plain_tag, node.value, node.start_mark, node.end_mark)


def plain(node: Node) -> Any:
    """The node tree as plain Python data (for digests and summaries)."""
    if node.kind == "map":
        return {k: plain(e.node) for k, e in node.value.items()}
    if node.kind == "seq":
        return [plain(n) for n in node.value]
    return node.value
