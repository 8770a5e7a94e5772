"""The hook through which evidence-type plug-ins own keys under ``security.attestation``.

cloister's extensions next to SCONE's ``mode``/``tolerate``/``ignore_advisories``
(``tpm_pcrs``, ``snp_measurements``, ``tdx_mrtds``, …) are defined, validated
and checked by the plug-in of their evidence type
(:class:`cloister.attest.PolicyKey`); the policy model only keeps their
validated values in :attr:`AttestationSecurity.extensions`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from cloister.policy._yaml import Node


def attestation_keys() -> Mapping[str, Callable[[Any], Any]]:
    """Extension key → its validator (plain value → kept value, ``ValueError`` if invalid)."""
    registry = importlib.import_module("cloister.attest._registry")
    return {name: key.parse for name, key in registry.policy_keys().items()}


def extension_value(node: Node) -> Any:
    """A node as plain data for a validator: numbers as written, so hex keeps its digits."""
    if node.kind == "map":
        return {k: extension_value(e.node) for k, e in node.value.items()}
    if node.kind == "seq":
        return [extension_value(n) for n in node.value]
    if isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.raw if node.raw is not None else str(node.value)
    return node.value
