"""HTTPS for the CAS: cheroot + pyOpenSSL accepting self-signed client certificates.

Python's ``ssl`` cannot accept an arbitrary self-signed client certificate,
yet CAS identities are exactly that: a caller *is* the public key it proves
possession of in the TLS handshake.  pyOpenSSL lets us install a verify
callback, so:

- :class:`ClientCertAdapter` requests (never requires) a client certificate,
  speaks TLS >= 1.2 only, and accepts a chain whose only faults are that it
  is self-signed or its issuer is unknown.  Expired / not-yet-valid certs and
  bad signatures are still refused, so a broken certificate fails the
  handshake instead of becoming an identity.
- :class:`IdentityGateway` reads the peer certificate of the request's
  connection and puts the caller's identity into the WSGI environ:
  ``ENV_KEY_HASH`` (SHA-256 hex of the DER SubjectPublicKeyInfo) and
  ``ENV_CERT_PEM``.  A connection without a certificate gets neither key:
  the caller is anonymous and reaches only public routes.
"""

from __future__ import annotations

import logging
from typing import Any

from cheroot import wsgi
from cheroot.ssl.pyopenssl import pyOpenSSLAdapter
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from cloister.cas._http import ENV_CERT_PEM, ENV_KEY_HASH, key_hash

_log = logging.getLogger(__name__)

#: verification "errors" that only say the chain is not rooted in a CA we know;
#: that is the normal case for self-signed identities.
_TOLERATED = frozenset(
    {
        2,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
        18,  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
        19,  # X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
        20,  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        21,  # X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
        24,  # X509_V_ERR_INVALID_CA (an intermediate the client sent without CA flag)
        26,  # X509_V_ERR_INVALID_PURPOSE (identity certs need no clientAuth EKU)
    }
)

_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!RC4:!3DES"


def _verify(_conn: Any, _cert: Any, errnum: int, depth: int, ok: int) -> bool:
    if ok or errnum in _TOLERATED:
        return True
    _log.info("refused client certificate at depth %d: X509 verify error %d", depth, errnum)
    return False


class ClientCertAdapter(pyOpenSSLAdapter):
    """cheroot's pyOpenSSL adapter with TLS >= 1.2 and optional self-signed client certs."""

    def get_context(self) -> SSL.Context:
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        options = SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
        options |= getattr(SSL, "OP_NO_RENEGOTIATION", 0)
        ctx.set_options(options)
        ctx.set_cipher_list(_CIPHERS)
        ctx.use_privatekey_file(self.private_key)
        ctx.use_certificate_chain_file(self.certificate)
        ctx.check_privatekey()
        # VERIFY_PEER without FAIL_IF_NO_PEER_CERT: ask for a cert, allow none.
        ctx.set_verify(SSL.VERIFY_PEER, _verify)
        ctx.set_verify_depth(8)
        # required for session resumption once client certificates are requested
        ctx.set_session_id(b"cloister-cas")
        return ctx


def _peer_certificate(req: Any) -> x509.Certificate | None:
    sock = getattr(req.conn, "socket", None)
    getter = getattr(sock, "get_peer_certificate", None)
    if getter is None:
        return None
    try:
        peer = getter()
    except SSL.Error:
        return None
    if peer is None:
        return None
    cert: x509.Certificate = peer.to_cryptography()
    return cert


class IdentityGateway(wsgi.Gateway_10):
    """WSGI gateway that adds the caller's identity (from the TLS peer cert) to the environ."""

    def get_environ(self) -> dict[str, Any]:  # type: ignore[override]
        env: dict[str, Any] = super().get_environ()  # type: ignore[no-untyped-call]
        # never trust identity keys that arrive any other way
        env.pop(ENV_KEY_HASH, None)
        env.pop(ENV_CERT_PEM, None)
        cert = _peer_certificate(self.req)
        if cert is not None:
            env[ENV_KEY_HASH] = key_hash(cert)
            env[ENV_CERT_PEM] = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        return env
