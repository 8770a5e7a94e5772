"""``cloister transform``: the generic step that makes an existing Python app confidential.

Public API: :func:`transform` (seal + policy + deployment files → :class:`Bundle`),
:func:`parse_injection` / :class:`Injection` (``--inject PATH=SECRET_REF``) and
:func:`create_session` (send the bundle's policy to a CAS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloister.transform._bundle import DEFAULT_APP_PATH, POLICY_FILE, Bundle, transform
from cloister.transform._inject import Injection, parse_injection

if TYPE_CHECKING:
    from cloister.client import CASClient


def create_session(bundle: Bundle, client: CASClient) -> str:
    """Create the bundle's session on the CAS ``client`` talks to; returns its hash."""
    return client.create_session(bundle.policy_path.read_text()).hash


__all__ = [
    "DEFAULT_APP_PATH",
    "POLICY_FILE",
    "Bundle",
    "Injection",
    "create_session",
    "parse_injection",
    "transform",
]
