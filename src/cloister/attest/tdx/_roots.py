"""The Intel SGX Root CA (shipped, pinned by fingerprint) and roots configured in collateral."""

from __future__ import annotations

import importlib.resources

from cryptography import x509

from cloister.attest import _x509
from cloister.attest._plugin import Collateral

#: SHA-256 of the Intel SGX Root CA's DER (production)
PINNED_ROOT = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
ROOTS_DIRECTORY = "trusted-roots/tdx/"


def shipped_root() -> x509.Certificate:
    """The shipped Intel SGX Root CA; refuses a file that does not match its pin."""
    data = (importlib.resources.files("cloister.attest.tdx") / "roots"
            / "intel_sgx_root_ca.pem").read_bytes()
    cert = _x509.load_certificate(data)
    if cert is None or _x509.fingerprint(cert) != PINNED_ROOT:
        raise ValueError("shipped Intel SGX Root CA does not match its pinned fingerprint: "
                         "reinstall cloister")
    return cert


def configured_roots(collateral: Collateral) -> list[x509.Certificate]:
    """Self-signed roots under ``trusted-roots/tdx/`` of the collateral (trusted as shipped)."""
    found = []
    for name in collateral:
        if name.startswith(ROOTS_DIRECTORY):
            found += [c for c in _x509.load_certificates(collateral.get(name) or b"")
                      if _x509.issued_by(c, c)]
    return found
