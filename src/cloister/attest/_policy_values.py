"""Helpers plug-ins share to validate their policy keys' plain YAML values.

Scalars reach a :class:`cloister.attest.PolicyKey` as the policy text wrote
them (numbers as their digits, so an all-digit hex value keeps its zeros),
mappings as ``dict`` and lists as ``list``.  Every helper raises
:class:`ValueError` with a message naming the key.
"""

from __future__ import annotations

import re
from typing import Any

_HEX = re.compile(r"[0-9a-fA-F]+")


def hex_value(value: Any, where: str, length: int) -> str:
    """``value`` as lower-case hex of exactly ``length`` bytes."""
    text = value if isinstance(value, str) else None
    if text is None or len(text) != 2 * length or not _HEX.fullmatch(text):
        raise ValueError(f"{where} must be {2 * length} hex digits, got {value!r}")
    return text.lower()


def hex_list(value: Any, where: str, length: int) -> tuple[str, ...]:
    """A hex value or a list of them, each ``length`` bytes → sorted unique tuple."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError(f"{where} lists nothing: remove it or list reference values")
    return tuple(sorted({hex_value(item, f"an entry of {where}", length) for item in items}))


def integer(value: Any, where: str, low: int, high: int) -> int:
    """A non-negative integer in ``low..high`` (given as digits, or 0x-prefixed hex)."""
    text = value if isinstance(value, str) else None
    try:
        number = int(text, 0) if text is not None else None
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise ValueError(f"{where} must be an integer in {low}..{high}, got {value!r}")
    return number


def mapping(value: Any, where: str, known: tuple[str, ...]) -> dict[str, Any]:
    """A mapping whose keys are all among ``known``."""
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a mapping of {', '.join(known)}")
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(f"{where} has unknown key {unknown[0]!r}; known: {', '.join(known)}")
    return value
