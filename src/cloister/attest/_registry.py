"""The registry of evidence types: one plug-in subpackage each.

Adding an evidence type is one subpackage of :mod:`cloister.attest` that
exports ``EVIDENCE_TYPE`` (an :class:`._plugin.EvidenceType`) and one line
in :data:`BUILTIN`; the decision code and the LAS only ever call the
functions here.  Plug-ins are imported on first use.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from cloister import errors
from cloister.attest._plugin import EvidenceType, PolicyKey, Quoter, Verifier

#: the plug-in subpackages of cloister.attest, in the order they are listed to users
BUILTIN = (
    "simulation",
    "tpm",
    "sevsnp",
    "tdx",
    "azsnpvtpm",
)

_lock = threading.Lock()
_loaded: dict[str, EvidenceType] = {}


def evidence_types() -> Mapping[str, EvidenceType]:
    """Evidence type name → plug-in, loading every built-in plug-in once."""
    with _lock:
        if not _loaded:
            for name in BUILTIN:
                module = importlib.import_module(f"cloister.attest.{name}")
                plugin: EvidenceType = module.EVIDENCE_TYPE
                _loaded[plugin.name] = plugin
        return MappingProxyType(_loaded)


def verifiers() -> Mapping[str, Verifier]:
    """Evidence type name → its verifier."""
    return MappingProxyType({name: t.verifier for name, t in evidence_types().items()})


def policy_keys() -> Mapping[str, PolicyKey]:
    """Extension key under ``security.attestation`` → the plug-in key that owns it."""
    keys: dict[str, PolicyKey] = {}
    for plugin in evidence_types().values():
        for key in plugin.policy_keys:
            keys.setdefault(key.name, key)
    return MappingProxyType(keys)


def make_quoter(evidence_type: str, state: Path, options: Mapping[str, str]) -> Quoter:
    """The LAS quoter of ``evidence_type`` (:class:`errors.ConfigError` if it has none)."""
    plugin = evidence_types().get(evidence_type)
    quoting = sorted(n for n, t in evidence_types().items() if t.quoter is not None)
    if plugin is None or plugin.quoter is None:
        raise errors.ConfigError(f"the LAS cannot quote {evidence_type!r} evidence",
                                 details=[f"quotable evidence types: {', '.join(quoting)}"])
    return plugin.quoter(state, options)
