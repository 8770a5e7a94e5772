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


class Reader:
    def __init__(self) -> None:
        self.errors: list[tuple[Mark, str]] = []

    def error(self, mark: Mark, message: str) -> None:
        self.errors.append((mark, message))

    def messages(self) -> list[str]:
        ordered = sorted(self.errors, key=lambda item: (item[0].line, item[0].column))
        return [f"{mark}: {message}" for mark, message in ordered]

    # --- structure -----------------------------------------------------------

    def mapping(self, node: Node, known: tuple[str, ...], where: str) -> dict[str, Entry] | None:
        """The entries of a mapping whose keys are all in ``known``; unknown keys are errors."""
        if node.kind != "map":
            self.error(node.mark, f"{where} must be a mapping, got {describe(node)}")
            return None
        for key, entry in node.value.items():
            if key not in known:
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
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known keys: {', '.join(known)}"


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
