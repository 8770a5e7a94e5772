"""AMD's key hierarchy: ARK and ASK/ASVK per product (shipped, pinned), VCEK/VLEK extensions.

``roots/`` holds AMD's certificate chains as its key server (KDS) publishes
them: for each product the ASK (signs VCEKs) or ASVK (signs VLEKs) and the
self-signed ARK.  Each ARK is pinned by the SHA-256 of its DER in
:data:`PINNED_ARKS`; a shipped file that does not match is refused at load.
Further roots can be configured (``trusted-roots/sev-snp/*.pem`` in the
collateral directory): they are trusted as if shipped.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509

from cloister.attest import _x509

PRODUCTS = ("milan", "genoa", "turin")
#: SHA-256 of each product's ARK (DER), as AMD's key server serves it
PINNED_ARKS = {
    "milan": "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    "genoa": "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    "turin": "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
}
_OID = "1.3.6.1.4.1.3704.1."
OID_PRODUCT_NAME = _OID + "2"
OID_HWID = _OID + "4"
OID_CSP_ID = _OID + "5"
#: TCB component → OID of the VCEK/VLEK extension carrying its security patch level
TCB_OIDS = {"bootloader": _OID + "3.1", "tee": _OID + "3.2", "snp": _OID + "3.3",
            "microcode": _OID + "3.8", "fmc": _OID + "3.9"}
ROOTS_DIRECTORY = "trusted-roots/sev-snp/"


@dataclass
class ProductRoots:
    """The trusted ARK of a product and its ASK (VCEK issuer) and ASVK (VLEK issuer)."""

    ark: x509.Certificate
    issuers: dict[str, x509.Certificate] = field(default_factory=dict)  # "vcek"/"vlek" → cert


def _product_and_role(cert: x509.Certificate) -> tuple[str, str] | None:
    """``("milan", "ark"|"vcek"|"vlek")`` from AMD's names: ARK-Milan, SEV-Milan, SEV-VLEK-Milan."""
    cn = _x509.name(cert)
    for prefix, role in (("ARK-", "ark"), ("SEV-VLEK-", "vlek"), ("SEV-", "vcek")):
        product = cn.removeprefix(prefix).lower()
        if cn.startswith(prefix) and product in PRODUCTS:
            return product, role
    return None


def roots_from(bundles: Iterable[bytes], *, pinned: bool) -> dict[str, ProductRoots]:
    """Product → roots from PEM bundles; with ``pinned`` an ARK must match :data:`PINNED_ARKS`.

    A bundle's issuing certificate counts only when its ARK signed it.
    """
    certs = [c for bundle in bundles for c in _x509.load_certificates(bundle)]
    roots: dict[str, ProductRoots] = {}
    for cert in certs:
        kind = _product_and_role(cert)
        if kind is None or kind[1] != "ark" or not _x509.issued_by(cert, cert):
            continue
        if pinned and _x509.fingerprint(cert) != PINNED_ARKS[kind[0]]:
            raise ValueError(f"shipped AMD root {_x509.name(cert)} does not match its pinned "
                             "fingerprint: reinstall cloister")
        roots[kind[0]] = ProductRoots(cert)
    for cert in certs:
        kind = _product_and_role(cert)
        if kind is None or kind[1] == "ark" or kind[0] not in roots:
            continue
        if _x509.issued_by(cert, roots[kind[0]].ark):
            roots[kind[0]].issuers[kind[1]] = cert
    return roots


def shipped_roots() -> dict[str, ProductRoots]:
    """The AMD roots shipped in ``roots/``, checked against their pins."""
    folder = importlib.resources.files("cloister.attest.sevsnp") / "roots"
    bundles = [f.read_bytes() for f in sorted(folder.iterdir(), key=lambda f: f.name)
               if f.name.endswith(".pem")]
    return roots_from(bundles, pinned=True)


def _der_integer(value: bytes) -> int | None:
    if len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2:
        return None
    return int.from_bytes(value[2:], "big", signed=True)


def _der_ia5(value: bytes) -> str | None:
    if len(value) < 2 or value[0] != 0x16 or value[1] != len(value) - 2:
        return None
    return value[2:].decode("ascii", "replace")


def _extension(cert: x509.Certificate, oid: str) -> bytes | None:
    for ext in cert.extensions:
        if ext.oid.dotted_string == oid and isinstance(ext.value, x509.UnrecognizedExtension):
            return bytes(ext.value.value)
    return None


def tcb_of(cert: x509.Certificate) -> dict[str, int]:
    """The TCB security patch levels a VCEK/VLEK was issued for (missing ones omitted)."""
    levels = {}
    for part, oid in TCB_OIDS.items():
        raw = _extension(cert, oid)
        value = None if raw is None else _der_integer(raw)
        if value is not None:
            levels[part] = value
    return levels


def hwid_of(cert: x509.Certificate) -> bytes | None:
    """The chip id a VCEK was issued for (a VLEK has none)."""
    return _extension(cert, OID_HWID)


def product_name_of(cert: x509.Certificate) -> str | None:
    """The VCEK's product name (``Milan-B0``, ``Genoa``) reduced to ``milan``/``genoa``/…"""
    raw = _extension(cert, OID_PRODUCT_NAME)
    text = None if raw is None else _der_ia5(raw)
    if text is None:
        return None
    product = text.split("-", 1)[0].lower()
    return product if product in PRODUCTS else None


def csp_of(cert: x509.Certificate) -> str | None:
    """The cloud provider a VLEK was issued to."""
    raw = _extension(cert, OID_CSP_ID)
    return None if raw is None else _der_ia5(raw)
