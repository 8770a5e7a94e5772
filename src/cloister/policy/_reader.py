"""Typed access to :class:`~cloister.policy._yaml.Node` trees, collecting every error.

A :class:`Reader` never raises for a bad value: it records
``"line L column C: message"`` and returns None, so one pass reports every
problem of a session at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from cloister.policy._model import Invalid
from cloister.policy._scone import UNSERVED_KEYS, unserved_message
from cloister.policy._yaml import Entry, Mark, Node

T = TypeVar("T")

_KIND_NAMES = {"scalar": "a scalar", "seq": "a list", "map": "a mapping"}


def describe(node: Node) -> str:
    if node.kind == "scalar":
        value = node.value
        if value is None:
            return "nothing (null)"
        return f"{type(value).__name__} {value!r}"
    return _KIND_NAMES[node.kind]


#: how close an unknown key must be to a known one for "did you mean" (difflib ratio)
SUGGEST_CUTOFF = 0.8


class Reader:
    """Collects errors, the SCONE features cloister cannot serve, and notes, with positions.

    ``session_name`` is the session's own name once read (relative session paths resolve
    against it); ``text`` is the session text the nodes came from.
    """

    def __init__(self, text: str = "") -> None:
        self.errors: list[tuple[int, Mark, str]] = []
        self.unserved: list[tuple[Mark, str]] = []
        self.notes: list[tuple[Mark, str]] = []
        self.session_name: str | None = None
        self.text = text

    def error(self, mark: Mark, message: str, *, cause: bool = False) -> None:
        """Record an error; ``cause`` ones (e.g. a wrong version) are listed before the rest."""
        self.errors.append((0 if cause else 1, mark, message))

    def unserve(self, mark: Mark, feature: str, reason: str) -> None:
        self.unserved.append((mark, unserved_message(feature, reason)))

    def note(self, mark: Mark, message: str) -> None:
        self.notes.append((mark, message))

    def messages(self) -> list[str]:
        ordered = sorted(self.errors, key=lambda item: (item[0], item[1].line, item[1].column))
        return [f"{mark}: {message}" for _, mark, message in ordered]

    def unserved_messages(self) -> list[str]:
        return _positioned(self.unserved)

    def note_messages(self) -> list[str]:
        return _positioned(self.notes)

    # --- structure -----------------------------------------------------------

    def mapping(
        self, node: Node, known: tuple[str, ...], where: str, place: str | None = None
    ) -> dict[str, Entry] | None:
        """The entries of a mapping whose keys are all in ``known``.

        A key of SCONE's language that cloister cannot serve at ``place`` (default
        ``where``; see :mod:`cloister.policy._scone`) is recorded as unserved; any other
        unknown key is an error."""
        if node.kind != "map":
            self.error(node.mark, f"{where} must be a mapping, got {describe(node)}")
            return None
        unserved = UNSERVED_KEYS.get(place or where, {})
        for key, entry in node.value.items():
            if key in known:
                continue
            if key in unserved:
                self.unserve(entry.key_mark, f"{key!r} in {where}", unserved[key])
            else:
                self.error(entry.key_mark, f"unknown key {key!r} in {where}{_suggest(key, known)}")
        return {k: e for k, e in node.value.items() if k in known}

    def items(self, node: Node, where: str, *, single_ok: bool = False) -> Iterator[Node]:
        """The items of a list (a single non-list value too when ``single_ok``)."""
        if node.kind == "seq":
            yield from node.value
        elif single_ok and node.value is not None:
            yield node
        elif node.kind == "scalar" and node.value is None:
            return
        else:
            self.error(node.mark, f"{where} must be a list, got {describe(node)}")

    def each(
        self,
        node: Node | None,
        where: str,
        read: Callable[[Node], T | None],
        *,
        single_ok: bool = False,
    ) -> tuple[T, ...]:
        """``read`` of every item of an optional list; items it rejects (None) are dropped,
        their errors already recorded."""
        if node is None or is_null(node):
            return ()
        found = (read(item) for item in self.items(node, where, single_ok=single_ok))
        return tuple(x for x in found if x is not None)

    # --- scalars -------------------------------------------------------------

    def string(self, node: Node, where: str, *, coerce: bool = False) -> str | None:
        value = node.value
        if node.kind == "scalar" and isinstance(value, str):
            return value
        if coerce and node.kind == "scalar" and isinstance(value, int | float):
            # the text as written: "0600" stays "0600", an all-digit hex value stays hex
            return node.raw if node.raw is not None else str(value)
        self.error(node.mark, f"{where} must be a string, got {describe(node)}")
        return None

    def integer(self, node: Node, where: str) -> int | None:
        value = node.value
        if node.kind == "scalar" and isinstance(value, int) and not isinstance(value, bool):
            return value
        self.error(node.mark, f"{where} must be an integer, got {describe(node)}")
        return None

    def boolean(self, node: Node, where: str) -> bool | None:
        if node.kind == "scalar" and isinstance(node.value, bool):
            return bool(node.value)
        self.error(node.mark, f"{where} must be true or false, got {describe(node)}")
        return None

    def strings(
        self, node: Node, where: str, *, single_ok: bool = False, coerce: bool = False
    ) -> tuple[str, ...]:
        found = (
            self.string(item, f"an entry of {where}", coerce=coerce)
            for item in self.items(node, where, single_ok=single_ok)
        )
        return tuple(s for s in found if s is not None)

    # --- construction --------------------------------------------------------

    def build(self, factory: Callable[[], T], fields: dict[str, Entry], fallback: Mark) -> T | None:
        """Call ``factory``; an :class:`Invalid` it raises becomes an error at its field."""
        try:
            return factory()
        except Invalid as err:
            entry = fields.get(err.field)
            self.error(entry.node.mark if entry else fallback, err.message)
            return None


def _suggest(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=SUGGEST_CUTOFF)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f": not a key of SCONE's session language 0.3 here (known keys: {', '.join(known)})"


def _positioned(items: list[tuple[Mark, str]]) -> list[str]:
    ordered = sorted(items, key=lambda item: (item[0].line, item[0].column))
    return [f"{mark}: {message}" for mark, message in ordered]


def get(fields: dict[str, Entry], key: str) -> Node | None:
    entry = fields.get(key)
    return entry.node if entry is not None else None


def present(node: Node | None) -> Node | None:
    """``node`` unless it is missing or YAML null."""
    return None if is_null(node) else node


def is_null(node: Node | None) -> bool:
    return node is None or (node.kind == "scalar" and node.value is None)


def value_or_none(reader: Reader, node: Node | None, fn: Callable[[Node], Any]) -> Any:
    return None if is_null(node) else fn(node)  # type: ignore[arg-type]
