"""The seam between the CAS and secret generation (:mod:`cloister.secrets`).

The session service treats secret material as opaque bytes (what the store
seals); a :class:`SecretEngine` is the only code that interprets them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cloister.policy import Session


class SecretEngine(Protocol):
    def generate(
        self,
        session: Session,
        *,
        imported: Mapping[str, bytes],
        previous: Session | None,
        previous_values: Mapping[str, bytes],
    ) -> dict[str, bytes]:
        """Material for every secret of ``session`` that is not imported.

        On update (``previous`` given) ascii/binary values are kept, private
        keys kept only when ``migrate`` is true in both versions, certificates
        re-issued.  ``imported`` holds the already-resolved imported secrets
        (e.g. an issuer CA), keyed by the importing secret's name.
        """

    def public_part(self, material: bytes) -> tuple[str, str]:
        """``(kind, value)`` a public reader may see; :class:`errors.SecretError` if none."""

    def for_import(self, material: bytes, *, with_key: bool) -> bytes:
        """The material an importer gets: a certificate loses its key unless ``with_key``."""

    def kind(self, material: bytes) -> str:
        """The secret kind (``ascii``, ``x509`` …) of ``material``."""

    def fragment_text(self, material: bytes) -> str:
        """The YAML text of a config-fragment; :class:`errors.SecretError` for other kinds."""
