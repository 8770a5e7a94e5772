"""Secret references: ``$$SCONE::name[.suffix | :form[:form]][|escape(json)]$$``.

Both SCONE forms are understood: the legacy ``name.crt`` / ``name.key`` /
``name.chain`` / ``name.hex`` and the current ``name:crt``,
``name:privatekey:der``, ``name:chain``, ``name:base64`` …  Parsing needs
the set of secret names because ``.`` may appear inside a name: the whole
body naming a secret wins over a legacy suffix.

Invariant: a :class:`Reference` always names a :class:`Form` that is valid
for *some* kind; whether it fits the referenced secret's kind is checked by
:func:`form_allowed` (the loader does that once kinds are known).
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterator
from dataclasses import dataclass
from enum import Enum

#: the opening and closing of a reference; the body may not contain ``$``
REFERENCE_RE = re.compile(r"\$\$SCONE::(?P<body>[^$]*)\$\$")


class Form(Enum):
    """How a secret is rendered where it is referenced."""

    VALUE = "value"  # ascii text
    BIN = "bin"  # raw bytes of a binary secret
    HEX = "hex"
    BASE64 = "base64"
    BASE64URL = "base64url"
    BASE32 = "base32"
    BASE32NOPAD = "base32nopad"
    KEY_PEM = "privatekey:pem"  # PKCS#8 PEM
    KEY_DER = "privatekey:der"  # PKCS#8 DER
    CRT_PEM = "crt:pem"
    CRT_DER = "crt:der"
    CHAIN = "chain"  # issuers only: intermediates → root, the certificate excluded
    LEGACY_CHAIN = "legacy-chain"  # root first … the certificate itself last
    PKCS12 = "pkcs12-with-private-key"

    @property
    def is_binary(self) -> bool:
        """True when the rendering is raw bytes (not allowed in argv or environment)."""
        return self in _BINARY_FORMS


_BINARY_FORMS = frozenset({Form.BIN, Form.KEY_DER, Form.CRT_DER, Form.PKCS12})

_BINARY_SUFFIXES: dict[str, Form] = {
    "": Form.BIN,
    ":bin": Form.BIN,
    ".hex": Form.HEX,
    ":hex": Form.HEX,
    ":base64": Form.BASE64,
    ":base64url": Form.BASE64URL,
    ":base32": Form.BASE32,
    ":base32nopad": Form.BASE32NOPAD,
}
_KEY_SUFFIXES: dict[str, Form] = {
    "": Form.KEY_PEM,
    ":pem": Form.KEY_PEM,
    ":pkcs8:pem": Form.KEY_PEM,
    ":der": Form.KEY_DER,
    ":pkcs8:der": Form.KEY_DER,
}
_CERT_SUFFIXES: dict[str, Form] = {
    "": Form.CRT_PEM,
    ":crt": Form.CRT_PEM,
    ":crt:pem": Form.CRT_PEM,
    ":crt:der": Form.CRT_DER,
    ":privatekey": Form.KEY_PEM,
    ":privatekey:pem": Form.KEY_PEM,
    ":privatekey:pkcs8:pem": Form.KEY_PEM,
    ":privatekey:der": Form.KEY_DER,
    ":privatekey:pkcs8:der": Form.KEY_DER,
    ":chain": Form.CHAIN,
    ":pkcs12-with-private-key": Form.PKCS12,
    ".crt": Form.CRT_PEM,
    ".key": Form.KEY_PEM,
    ".chain": Form.LEGACY_CHAIN,
}

#: suffix → form, per secret kind (the kind names of the policy language)
SUFFIXES_BY_KIND: dict[str, dict[str, Form]] = {
    "ascii": {"": Form.VALUE},
    "binary": _BINARY_SUFFIXES,
    "private-key": _KEY_SUFFIXES,
    "x509": _CERT_SUFFIXES,
    "x509-ca": _CERT_SUFFIXES,
}

_ALL_SUFFIXES = sorted(
    {s for table in SUFFIXES_BY_KIND.values() for s in table if s}, key=len, reverse=True
)
_ESCAPES = ("json",)


@dataclass(frozen=True)
class Reference:
    """One parsed ``$$SCONE::…$$`` reference.

    ``suffix`` is the text after the secret name exactly as written (``""``,
    ``".crt"``, ``":privatekey:der"`` …); ``escape`` is ``"json"`` or None.
    """

    text: str
    secret: str
    suffix: str
    escape: str | None

    def form_for(self, kind: str) -> Form | None:
        """The rendering this reference asks of a secret of ``kind``; None if unsupported."""
        return SUFFIXES_BY_KIND.get(kind, {}).get(self.suffix)

    def allowed_suffixes(self, kind: str) -> list[str]:
        return [s or "(none)" for s in SUFFIXES_BY_KIND.get(kind, {})]


class ReferenceSyntaxError(ValueError):
    """A reference body cannot be parsed; the message names the bad text."""


def parse_reference(text: str, body: str, secret_names: Container[str]) -> Reference:
    """Parse the body of one reference (between ``$$SCONE::`` and ``$$``)."""
    escape: str | None = None
    if "|" in body:
        body, _, pipe = body.partition("|")
        match = re.fullmatch(r"escape\((\w+)\)", pipe.strip())
        if match is None or match.group(1) not in _ESCAPES:
            raise ReferenceSyntaxError(
                f"unsupported encoding pipe {pipe!r} in {text}: only |escape(json) is known"
            )
        escape = match.group(1)
    if not body:
        raise ReferenceSyntaxError(f"empty secret name in {text}")
    if body in secret_names:
        return Reference(text, body, "", escape)
    if ":" in body:
        name, sep, rest = body.partition(":")
        return Reference(text, name, sep + rest, escape)
    for suffix in _ALL_SUFFIXES:
        if suffix.startswith(".") and body.endswith(suffix) and len(body) > len(suffix):
            return Reference(text, body[: -len(suffix)], suffix, escape)
    return Reference(text, body, "", escape)


def find_references(value: str, secret_names: Container[str]) -> Iterator[Reference]:
    """Every reference in ``value``, in order.  Raises :class:`ReferenceSyntaxError`."""
    for match in REFERENCE_RE.finditer(value):
        yield parse_reference(match.group(0), match.group("body"), secret_names)


def substitute(value: str, render: dict[str, str]) -> str:
    """Replace every reference text in ``value`` by ``render[reference text]``."""
    return REFERENCE_RE.sub(lambda m: render[m.group(0)], value)
