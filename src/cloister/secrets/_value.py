"""The value of one secret, as the CAS stores it and the renderer reads it.

Invariants:
- a :class:`SecretValue` holds exactly the fields its kind needs (checked on
  construction): ``text`` for ascii, ``data`` for binary, ``key_pem`` (PKCS#8
  PEM) for private-key, ``cert_pem`` (+ optional ``key_pem``, + ``chain``) for
  x509 and x509-ca;
- ``chain`` lists the issuers' certificates, intermediates → root, and never
  the certificate itself; it is empty for a self-signed certificate;
- ``repr()``/``str()`` never show secret material (only the kind, and for a
  certificate its public SHA-256 fingerprint);
- :meth:`to_bytes` is canonical JSON (sorted keys, no whitespace), so equal
  values serialise to equal bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from cloister.errors import SecretError
from cloister.policy._model import SecretKind

_FORMAT = 1
_PEM_FIELDS = {
    SecretKind.ASCII: ("text",),
    SecretKind.BINARY: ("data",),
    SecretKind.PRIVATE_KEY: ("key_pem",),
    SecretKind.X509: ("cert_pem",),
    SecretKind.X509_CA: ("cert_pem",),
    SecretKind.CONFIG_FRAGMENT: ("text",),
}


@dataclass(frozen=True, repr=False)
class SecretValue:
    """One secret's value.  Build it with the class methods, not the constructor."""

    kind: SecretKind
    text: str | None = None
    data: bytes | None = None
    key_pem: str | None = None
    cert_pem: str | None = None
    chain: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        required = _PEM_FIELDS[self.kind]
        allowed = set(required)
        if self.kind in (SecretKind.X509, SecretKind.X509_CA):
            allowed |= {"key_pem", "chain"}
        present = {
            name for name in ("text", "data", "key_pem", "cert_pem")
            if getattr(self, name) is not None
        } | ({"chain"} if self.chain else set())
        missing = [name for name in required if name not in present]
        extra = sorted(present - allowed)
        if missing or extra:
            # a programming error, not user input: name the fields only
            raise ValueError(
                f"SecretValue of kind {self.kind.value}: missing {missing}, unexpected {extra}"
            )

    # --- constructors ---------------------------------------------------------

    @classmethod
    def ascii(cls, text: str) -> SecretValue:
        return cls(SecretKind.ASCII, text=text)

    @classmethod
    def fragment(cls, text: str) -> SecretValue:
        """A config-fragment: its YAML text, positioned as in its session."""
        return cls(SecretKind.CONFIG_FRAGMENT, text=text)

    @classmethod
    def binary(cls, data: bytes) -> SecretValue:
        return cls(SecretKind.BINARY, data=bytes(data))

    @classmethod
    def private_key(cls, key_pem: str) -> SecretValue:
        """``key_pem`` is an unencrypted PKCS#8 PEM private key."""
        return cls(SecretKind.PRIVATE_KEY, key_pem=key_pem)

    @classmethod
    def certificate(
        cls,
        cert_pem: str,
        *,
        key_pem: str | None = None,
        chain: tuple[str, ...] = (),
        ca: bool = False,
    ) -> SecretValue:
        """An x509 (or x509-ca with ``ca=True``); ``chain`` is intermediates → root."""
        kind = SecretKind.X509_CA if ca else SecretKind.X509
        return cls(kind, cert_pem=cert_pem, key_pem=key_pem, chain=tuple(chain))

    # --- views -----------------------------------------------------------------

    @property
    def is_certificate(self) -> bool:
        return self.kind in (SecretKind.X509, SecretKind.X509_CA)

    def certificate_object(self) -> x509.Certificate:
        """The parsed certificate (x509/x509-ca only)."""
        if self.cert_pem is None:
            raise SecretError(f"a {self.kind.value} secret has no certificate")
        return x509.load_pem_x509_certificate(self.cert_pem.encode("ascii"))

    def without_private_key(self) -> SecretValue:
        """The same certificate without its private key (what an importer may see)."""
        if not self.is_certificate:
            raise SecretError(f"a {self.kind.value} secret is not a certificate")
        return replace(self, key_pem=None)

    def public_part(self) -> str:
        """What ``export_public`` may show: the certificate PEM, or a key's public PEM.

        ascii and binary secrets have no public part: :class:`SecretError`.
        """
        if self.is_certificate:
            assert self.cert_pem is not None
            return self.cert_pem
        if self.kind is SecretKind.PRIVATE_KEY:
            assert self.key_pem is not None
            key = serialization.load_pem_private_key(self.key_pem.encode("ascii"), None)
            return key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode("ascii")
        raise SecretError(
            f"a {self.kind.value} secret has no public part: it cannot be exported publicly",
            details=["remove export_public, or export it to a session with 'export'"],
        )

    # --- serialisation -----------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Canonical JSON: sorted keys, no whitespace, binary data as hex."""
        doc: dict[str, Any] = {"format": _FORMAT, "kind": self.kind.value}
        if self.text is not None:
            doc["text"] = self.text
        if self.data is not None:
            doc["data"] = self.data.hex()
        if self.key_pem is not None:
            doc["key"] = self.key_pem
        if self.cert_pem is not None:
            doc["cert"] = self.cert_pem
            doc["chain"] = list(self.chain)
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> SecretValue:
        """Inverse of :meth:`to_bytes`; a malformed blob is a :class:`SecretError`."""
        try:
            doc = json.loads(blob)
            if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
                raise ValueError("unknown format")
            known = {"format", "kind", "text", "data", "key", "cert", "chain"}
            if set(doc) - known:
                raise ValueError("unknown field")
            chain = doc.get("chain", [])
            fields = (doc.get("text"), doc.get("key"), doc.get("cert"))
            if not all(f is None or isinstance(f, str) for f in fields) or not (
                isinstance(chain, list) and all(isinstance(c, str) for c in chain)
            ):
                raise ValueError("bad field type")
            data = doc.get("data")
            return cls(
                SecretKind(doc["kind"]),
                text=doc.get("text"),
                data=None if data is None else bytes.fromhex(data),
                key_pem=doc.get("key"),
                cert_pem=doc.get("cert"),
                chain=tuple(chain),
            )
        except (ValueError, KeyError, TypeError) as err:
            # never chain the original exception: its text could quote the blob
            raise SecretError("stored secret value is malformed") from _opaque(err)

    # --- safe display -------------------------------------------------------------

    def __repr__(self) -> str:
        if self.is_certificate and self.cert_pem is not None:
            try:
                fingerprint = self.certificate_object().fingerprint(hashes.SHA256()).hex()
            except ValueError:
                fingerprint = "unparsable"
            has_key = "with key" if self.key_pem is not None else "without key"
            return (
                f"<SecretValue {self.kind.value} sha256={fingerprint[:16]}… {has_key}, "
                f"chain of {len(self.chain)}>"
            )
        return f"<SecretValue {self.kind.value} (hidden)>"

    __str__ = __repr__


def _opaque(err: BaseException) -> Exception:
    """A stand-in cause that names the exception type only, not its message."""
    return Exception(type(err).__name__)
