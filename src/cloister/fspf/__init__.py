"""The file shield: protect a directory tree and read it back with integrity.

A *protection file* (fspf) lists regions (path prefixes, longest prefix wins)
that are ``not-protected``, ``authenticated`` (plaintext, SHA-256 per chunk)
or ``encrypted`` (AES-256-GCM per chunk, per-file random key, the file's path
and chunk position bound as associated data).  The manifest itself is
AES-256-GCM encrypted under a 32-byte key (``fspf_key``); its 16-byte tag
(``fspf_tag``) identifies the state of the whole tree.

Public API: :func:`seal`, :class:`SealResult`, :class:`ProtectedTree`,
:class:`FileInfo`, :func:`install_importer`, :func:`uninstall_importer`,
:func:`run_main`, and the SCONE-style steps :func:`create`, :func:`add_region`,
:func:`add_files`, :func:`encrypt`, :func:`tag`, :func:`describe`.
"""

import importlib
from typing import Any

from cloister.fspf._importer import TreeFinder, install_importer, run_main, uninstall_importer
from cloister.fspf._tree import FileInfo, ProtectedTree

#: the sealing tools are imported on first use: ``cloister run`` only reads trees
_BUILD_NAMES = frozenset({
    "SealResult", "add_files", "add_region", "create", "describe", "encrypt", "seal", "tag",
})


def __getattr__(name: str) -> Any:
    if name in _BUILD_NAMES:
        return getattr(importlib.import_module("cloister.fspf._build"), name)
    raise AttributeError(f"module 'cloister.fspf' has no attribute {name!r}")


__all__ = [
    "FileInfo",
    "ProtectedTree",
    "SealResult",
    "TreeFinder",
    "add_files",
    "add_region",
    "create",
    "describe",
    "encrypt",
    "install_importer",
    "run_main",
    "seal",
    "tag",
    "uninstall_importer",
]
