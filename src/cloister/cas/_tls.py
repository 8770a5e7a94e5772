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
  the caller is anonymous and reaches only public routes.  The identity is
  worked out once per connection, at its first request, and kept with it:
  the peer of a TLS connection cannot change after its handshake, since the
  context refuses renegotiation (TLS 1.2; TLS 1.3 has none, and the CAS never
  asks for a post-handshake certificate).
- :class:`_SSLWriter` sends a response's head and body as one TLS write
  (:meth:`_SSLWriter.cork`) instead of one per part.
"""

from __future__ import annotations

import io
import logging
import select
import socket
import time
from typing import Any

from cheroot import errors as cheroot_errors
from cheroot import wsgi
from cheroot.makefile import StreamReader
from cheroot.ssl.pyopenssl import SSLConnection, SSLFileobjectStreamReader, pyOpenSSLAdapter
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from cloister._pki import key_hash
from cloister.cas._http import ENV_CERT_PEM, ENV_KEY_HASH

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


_SELF_SIGNED_LEAF = 18


def _self_signature_ok(cert: Any) -> bool:
    """OpenSSL does not check an untrusted self-signed cert's own signature; we do."""
    try:
        parsed: x509.Certificate = cert.to_cryptography()
        parsed.verify_directly_issued_by(parsed)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _verify(_conn: Any, cert: Any, errnum: int, depth: int, ok: int) -> bool:
    if ok:
        return True
    if errnum == _SELF_SIGNED_LEAF and not _self_signature_ok(cert):
        _log.info("refused client certificate: its self-signature does not verify")
        return False
    if errnum in _TOLERATED:
        return True
    _log.info("refused client certificate at depth %d: X509 verify error %d", depth, errnum)
    return False


class _SSLSocketIO(socket.SocketIO):
    """Raw reads that wait out pyOpenSSL's WantRead/WantWrite instead of failing.

    cheroot's pyOpenSSL reader retries ``readline`` but not ``read``; a request
    body arriving in a later TLS record then surfaced as ``WantReadError``.
    Retrying here, below the buffer, never loses bytes already read.

    ``pending`` holds bytes already read from the connection (by the header gate,
    :mod:`cloister.cas._gate`), served first; ``deadline`` (monotonic seconds) is
    when the current request part must be complete, whatever the per-read timeout.
    """

    pending = b""
    deadline: float | None = None

    def readinto(self, b: Any) -> int:
        if self.pending:
            n = min(len(b), len(self.pending))
            b[:n] = self.pending[:n]
            self.pending = self.pending[n:]
            return n
        sock: Any = self._sock  # type: ignore[attr-defined]
        timeout = sock.gettimeout() or 30.0
        deadline = time.monotonic() + timeout
        if self.deadline is not None:
            deadline = min(deadline, self.deadline)
        while True:
            try:
                return int(sock.recv_into(b))
            except SSL.WantReadError:
                readable, writable = [sock.fileno()], []
            except SSL.WantWriteError:
                readable, writable = [], [sock.fileno()]
            except SSL.ZeroReturnError:
                return 0
            except SSL.SysCallError as exc:
                if exc.args and exc.args[0] in (-1, 104):  # unexpected EOF / reset by peer
                    return 0
                raise OSError(str(exc)) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out reading the request")
            select.select(readable, writable, [], remaining)


class _SSLReader(SSLFileobjectStreamReader):
    def __init__(self, sock: Any, mode: str = "rb", bufsize: int = io.DEFAULT_BUFFER_SIZE) -> None:
        # skip StreamReader.__init__ (it builds a plain SocketIO); init its buffered base
        super(StreamReader, self).__init__(_SSLSocketIO(sock, "rb"), bufsize)
        self.bytes_read = 0

    def readline(self, size: int | None = -1) -> bytes:
        """A line already in the buffer comes straight from it (the request line and
        headers, handed over whole by the gate); else the pure-Python ``_pyio`` way."""
        state: Any = self  # _pyio.BufferedReader's buffer (cheroot's has_data reads it too)
        buf: bytes = state._read_buf
        pos: int = state._read_pos
        end = buf.find(b"\n", pos)
        limit = -1 if size is None else size
        if end >= 0 and (limit < 0 or end + 1 - pos <= limit):
            state._read_pos = end + 1
            return buf[pos:end + 1]
        return bytes(super().readline(limit))


class _SSLWriter:
    """The response side of a TLS connection: a write goes out at once, unless corked.

    Between :meth:`cork` and :meth:`uncork` writes are gathered (up to
    ``_CORK_LIMIT`` bytes), so a response's head and body leave in one TLS
    write and one ``send`` instead of one each; cheroot's own writer (the
    pure-Python ``_pyio`` one) sent every part as it came.  A full send buffer
    is waited out up to the socket's timeout; TLS and socket failures surface as
    cheroot expects them (``OSError`` with the errno, or ``FatalSSLAlert``).
    """

    _CORK_LIMIT = 64 * 1024

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._corked = False
        self.bytes_written = 0
        self.closed = False

    def cork(self) -> None:
        self._corked = True

    def uncork(self) -> None:
        self._corked = False
        self.flush()

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed connection")
        self._buf += data
        self.bytes_written += len(data)
        if not self._corked or len(self._buf) >= self._CORK_LIMIT:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            self._send_all(data)

    def _send_all(self, data: bytes) -> None:
        sock = self._sock
        timeout = sock.gettimeout() or 30.0
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            try:
                sent = int(sock.send(view[:16384]))
            except SSL.WantWriteError:
                readable, writable = [], [sock.fileno()]
            except SSL.WantReadError:
                readable, writable = [sock.fileno()], []
            except SSL.SysCallError as exc:
                raise OSError(exc.args[0] if exc.args else 0, str(exc)) from None
            except SSL.Error as exc:
                raise cheroot_errors.FatalSSLAlert(*exc.args) from None
            else:
                view = view[sent:]
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out writing the response")
            select.select(readable, writable, [], remaining)

    def close(self) -> None:
        self.closed = True
        self._buf = bytearray()


def _private_key(pem: bytes) -> Any:
    return serialization.load_pem_private_key(pem, password=None)


class ClientCertAdapter(pyOpenSSLAdapter):
    """cheroot's pyOpenSSL adapter with TLS >= 1.2 and optional self-signed client certs.

    The private key comes from memory (it is sealed at rest), the certificate chain
    from its (public) file.  :meth:`use_identity` switches both for new connections
    (a CAS leaving sealed mode): pyOpenSSL forbids changing a context in use, so a
    new context is built and every new connection is moved onto it in the
    ClientHello callback (which OpenSSL runs with or without SNI); connections
    already open keep theirs.
    """

    def __init__(self, certificate: str, key_pem: bytes) -> None:
        super().__init__(certificate, None)
        self._key_pem = key_pem
        self._active: SSL.Context | None = None

    def use_identity(self, certificate: str, key_pem: bytes) -> None:
        self.certificate, self._key_pem = certificate, key_pem
        self._active = self.get_context()

    def _switch(self, conn: SSL.Connection) -> None:
        active = self._active
        if active is not None and conn.get_context() is not active:
            conn.set_context(active)

    def get_context(self) -> SSL.Context:
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        # no renegotiation: a connection's peer certificate is the one its handshake
        # verified, for as long as it lives (IdentityGateway keeps it per connection)
        ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
                        | SSL.OP_NO_RENEGOTIATION)
        ctx.set_cipher_list(_CIPHERS)
        ctx.use_certificate_chain_file(self.certificate)
        ctx.use_privatekey(_private_key(self._key_pem))
        ctx.check_privatekey()
        # VERIFY_PEER without FAIL_IF_NO_PEER_CERT: ask for a cert, allow none.
        ctx.set_verify(SSL.VERIFY_PEER, _verify)
        ctx.set_verify_depth(8)
        # required for session resumption once client certificates are requested
        ctx.set_session_id(b"cloister-cas")
        ctx.set_tlsext_servername_callback(self._switch)
        return ctx

    def get_environ(self) -> dict[str, str]:
        # cheroot's version re-reads the server cert with deprecated pyOpenSSL X509 APIs;
        # the app needs only the scheme (the caller's identity comes from IdentityGateway)
        return {"wsgi.url_scheme": "https", "HTTPS": "on"}

    def makefile(self, sock: Any, mode: str = "r", bufsize: int = -1) -> Any:
        if "r" in mode and isinstance(sock, SSL.Connection | SSLConnection):
            conn: Any = sock
            reader = _SSLReader(conn, "rb", bufsize if bufsize > 0 else io.DEFAULT_BUFFER_SIZE)
            reader.ssl_timeout = conn.gettimeout()
            return reader
        if "w" in mode and isinstance(sock, SSL.Connection | SSLConnection):
            return _SSLWriter(sock)
        return super().makefile(sock, mode, bufsize)


def _peer_certificate(conn: Any) -> x509.Certificate | None:
    sock = getattr(conn, "socket", None)
    if isinstance(sock, SSLConnection):
        sock = sock._ssl_conn  # type: ignore[attr-defined]  # cheroot's locking proxy around the pyOpenSSL connection
    if not isinstance(sock, SSL.Connection):
        return None
    try:
        return sock.get_peer_certificate(as_cryptography=True)
    except SSL.Error:
        return None


#: the connection attribute holding its caller's identity, once known
_IDENTITY = "_cloister_identity"


def connection_identity(conn: Any) -> tuple[str, str] | None:
    """``(key hash, certificate PEM)`` of the peer of ``conn`` (a cheroot connection), or
    None (no certificate: anonymous).  Worked out at the first request of the connection
    (its handshake is complete by then) and kept on it: renegotiation is refused, so the
    certificate the handshake verified is the connection's for its whole life."""
    cached: tuple[tuple[str, str] | None] | None = conn.__dict__.get(_IDENTITY)
    if cached is None:
        cert = _peer_certificate(conn)
        identity = None if cert is None else (
            key_hash(cert), cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))
        cached = (identity,)
        setattr(conn, _IDENTITY, cached)
    return cached[0]


class IdentityGateway(wsgi.Gateway_10):
    """WSGI gateway that adds the caller's identity (from the TLS peer cert) to the environ."""

    def get_environ(self) -> dict[str, Any]:  # type: ignore[override]
        env: dict[str, Any] = super().get_environ()  # type: ignore[no-untyped-call]
        # never trust identity keys that arrive any other way
        env.pop(ENV_KEY_HASH, None)
        env.pop(ENV_CERT_PEM, None)
        identity = connection_identity(self.req.conn)
        if identity is not None:
            env[ENV_KEY_HASH], env[ENV_CERT_PEM] = identity
        return env
