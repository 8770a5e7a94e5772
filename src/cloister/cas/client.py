"""The CAS client library: what ``cloister session|values|cas attest`` and ``cloister run`` use.

Typical use::

    from cloister.cas.client import connect
    cas = connect("cas:8081", cas_cert="cas-ca.pem")      # verified against the pin
    ref = cas.create_session(text)                         # SessionRef(name, hash)
    cas.read_session(ref.name).text

- :func:`connect` resolves ``--cas`` / ``$CLOISTER_CAS_ADDR`` / ``$SCONE_CAS_ADDR``,
  the pinned certificate (``--cas-cert``, ``$CLOISTER_CAS_CERT``, the stored
  pin) and the client identity (``~/.cloister`` or ``$CLOISTER_HOME``).
- :class:`CASClient` is the HTTP API; every failure is a
  :class:`cloister.errors.CASClientError` (server errors are also instances
  of the server's class: ``NotFound``, ``Conflict``, ``AccessDenied`` …).
- :func:`attest`, :func:`fetch_certificate`, :func:`show_certificate` pin
  and inspect a CAS certificate; :func:`load_identity` the client identity;
  :func:`prepare_session_text` edits session text (``name``, ``predecessor``).
"""

from __future__ import annotations

from cloister.cas._client import (
    DEFAULT_TIMEOUT,
    REMOTE_ERRORS,
    CASClient,
    Reply,
    SessionRef,
    SessionVersion,
    remote_error_class,
)
from cloister.cas._client_connect import (
    Attested,
    FetchedCertificate,
    ShownCertificate,
    attest,
    connect,
    fetch_certificate,
    pins_home,
    show_certificate,
)
from cloister.cas._client_identity import ClientIdentity, identity_home, load_identity
from cloister.cas._client_text import prepare_session_text, set_top_level_key
from cloister.cas._client_trust import (
    DEFAULT_PORT,
    CASAddress,
    Trust,
    find_trust,
    fingerprint,
    pin_path,
    resolve_address,
    save_pin,
    tls_context,
)

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "REMOTE_ERRORS",
    "Attested",
    "CASAddress",
    "CASClient",
    "ClientIdentity",
    "FetchedCertificate",
    "Reply",
    "SessionRef",
    "SessionVersion",
    "ShownCertificate",
    "Trust",
    "attest",
    "connect",
    "fetch_certificate",
    "find_trust",
    "fingerprint",
    "identity_home",
    "load_identity",
    "pin_path",
    "pins_home",
    "prepare_session_text",
    "remote_error_class",
    "resolve_address",
    "save_pin",
    "set_top_level_key",
    "show_certificate",
    "tls_context",
]
