"""Config-fragment secrets (SCONE 0.3.10): structured values standing in for parts of a session.

A ``kind: config-fragment`` secret holds YAML (an explicit ``value``, or imported
from another session).  A scalar that is exactly ``$$SCONE::name$$`` for such a
secret stands for the fragment: a whole section (``access_policy``,
``security``, ``security.attestation``, a service's ``attestation``), a value,
or a list item — a list fragment in a list is spliced in ("lists will be
combined").  Fragments are expanded before the session is validated, and
their nodes keep their own positions, so an error inside a fragment names the
fragment's own line (and, for an imported one, its session).

Imported fragments are resolved by the CAS, which passes their texts in.
Without them (``session check``) an imported fragment's place is left empty
and noted: the CAS checks it when the session is created.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from cloister.policy._reader import Reader
from cloister.policy._yaml import Entry, Node, parse

#: how deep fragments may nest in fragments
MAX_FRAGMENT_DEPTH = 8
_WHOLE_REFERENCE_RE = re.compile(r"\$\$SCONE::([^$:|]+)\$\$")
#: top-level sections whose strings are literal text, never expanded
_LITERAL_SECTIONS = ("secrets", "name", "version", "predecessor", "creator")


class _Pending:
    """The place of an imported fragment whose value is not known here."""


_PENDING = _Pending()
#: the text of the empty value left where an imported fragment is not known here
PENDING_RAW = "(an imported config-fragment)"


def is_pending(node: Node | None) -> bool:
    """Whether ``node`` stands for an imported fragment not known here (treat as absent)."""
    return node is not None and node.kind == "scalar" and node.raw == PENDING_RAW


def apply(
    reader: Reader, root: Node, imported: Mapping[str, tuple[str, str]] | None
) -> Node:
    """``root`` with every fragment reference replaced by its fragment.

    ``imported`` maps an imported fragment's secret name to ``(text, origin)``: the
    exporter's fragment text, and where it came from (``config-fragment 'x' of session
    'y'``), which every position inside it names.  None: none are known."""
    local, pending = _declared(root)
    if not local and not pending:
        return root
    fragments = dict(local)
    for name, (text, origin) in (imported or {}).items():
        if name in pending:
            fragments[name] = parse(text, source=origin)
            pending.pop(name)
    return _Expander(reader, fragments, pending).top(root)


def _declared(root: Node) -> tuple[dict[str, Node], dict[str, str]]:
    """(name → value node of a local fragment, name → exporting session of an imported one)."""
    local: dict[str, Node] = {}
    imported: dict[str, str] = {}
    entry = root.value.get("secrets") if root.kind == "map" else None
    items = entry.node.value if entry is not None and entry.node.kind == "seq" else []
    for item in items:
        if item.kind != "map":
            continue
        fields = item.value
        name = fields.get("name")
        kind = fields.get("kind")
        if name is None or kind is None or kind.node.value != "config-fragment":
            continue
        key = name.node.value
        if not isinstance(key, str) or key in local or key in imported:
            continue
        if "value" in fields:
            local[key] = fields["value"].node
        elif "import" in fields and fields["import"].node.kind == "map":
            source = fields["import"].node.value.get("session")
            imported[key] = str(source.node.value) if source is not None else "?"
    return local, imported


def _pending_node(node: Node) -> Node:
    return Node(None, node.mark, "scalar", PENDING_RAW, node.span)


class _Expander:
    def __init__(self, reader: Reader, fragments: dict[str, Node], pending: dict[str, str]):
        self.reader = reader
        self.fragments = fragments
        self.pending = pending

    def top(self, root: Node) -> Node:
        if root.kind != "map":
            return root
        entries = {
            key: entry if key in _LITERAL_SECTIONS else self._entry(entry)
            for key, entry in root.value.items()
        }
        return Node(entries, root.mark, "map", root.raw, root.span)

    def _entry(self, entry: Entry) -> Entry:
        value = self._node(entry.node, ())
        if value is _PENDING:
            return Entry(entry.key_mark, _pending_node(entry.node))
        assert isinstance(value, Node)
        return Entry(entry.key_mark, value)

    def _node(self, node: Node, chain: tuple[str, ...]) -> Node | _Pending:
        if node.kind == "scalar":
            return self._scalar(node, chain)
        if node.kind == "map":
            entries = {}
            for key, entry in node.value.items():
                value = self._node(entry.node, chain)
                if value is _PENDING:
                    value = _pending_node(entry.node)
                assert isinstance(value, Node)
                entries[key] = Entry(entry.key_mark, value)
            return Node(entries, node.mark, "map", node.raw, node.span)
        items: list[Node] = []
        for item in node.value:
            value = self._node(item, chain)
            if value is _PENDING:
                continue
            assert isinstance(value, Node)
            is_reference = item.kind == "scalar" and value is not item
            # "lists will be combined": a list fragment in a list contributes its items
            items.extend(value.value if is_reference and value.kind == "seq" else [value])
        return Node(items, node.mark, "seq", node.raw, node.span)

    def _scalar(self, node: Node, chain: tuple[str, ...]) -> Node | _Pending:
        match = _WHOLE_REFERENCE_RE.fullmatch(node.value) if isinstance(node.value, str) else None
        if match is None:
            return node
        name = match.group(1)
        if name in self.pending:
            self.reader.note(node.mark, f"{node.value} stands for config-fragment {name!r} "
                             f"imported from session {self.pending[name]!r}: the CAS checks "
                             "it when the session is created")
            return _PENDING
        fragment = self.fragments.get(name)
        if fragment is None:
            return node
        if name in chain or len(chain) >= MAX_FRAGMENT_DEPTH:
            cycle = " -> ".join((*chain, name))
            self.reader.error(node.mark, f"config-fragment references loop or nest too deep: "
                              f"{cycle}")
            return Node(None, node.mark, "scalar", "", node.span)
        return self._node(fragment, (*chain, name))
