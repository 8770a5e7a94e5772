"""The CAS client library: what ``cloister session|values|cas attest`` and ``cloister run`` use.

Typical use::

    from cloister.client import connect
    cas = connect("cas:8081", cas_cert="cas-ca.pem")      # verified against the pin
    ref = cas.create_session(text)                         # SessionRef(name, hash)
    cas.read_session(ref.name).text

- :func:`connect` resolves ``--cas`` / ``$CLOISTER_CAS_ADDR`` / ``$SCONE_CAS_ADDR``,
  the pinned certificate (``--cas-cert``, ``$CLOISTER_CAS_CERT``, the stored
  pin) and the client identity (``~/.cloister`` or ``$CLOISTER_HOME``).
- :class:`CASClient` is the HTTP API; a transport failure is a
  :class:`cloister.errors.TransportError`, an error answer the server's own
  class (``NotFound``, ``Conflict``, ``AccessDenied``, ``SecretError`` …).
- :class:`Transport` / :func:`post_json` / :func:`tls_context`: the light
  layer under it (what ``cloister run`` uses).
- :func:`attest`, :func:`fetch_certificate`, :func:`show_certificate` pin
  and inspect a CAS certificate; :func:`load_identity` the client identity;
  :func:`prepare_session_text` edits session text (``name``, ``predecessor``).

Importing this package is cheap: the names below load their module on first
use, so :mod:`cloister.client._transport` (what ``cloister run`` needs) does not
pay for identities, pins or the policy model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloister.client._cas import (
        DEFAULT_TIMEOUT,
        CASClient,
        Reply,
        SessionRef,
        SessionVersion,
    )
    from cloister.client._connect import (
        Attested,
        FetchedCertificate,
        ShownCertificate,
        attest,
        connect,
        fetch_certificate,
        pins_home,
        show_certificate,
    )
    from cloister.client._identity import (
        ClientIdentity,
        identity_home,
        load_identity,
    )
    from cloister.client._text import (
        prepare_session_text,
        set_top_level_key,
    )
    from cloister.client._transport import Transport, post_json, tls_context
    from cloister.client._trust import (
        DEFAULT_PORT,
        CASAddress,
        Trust,
        find_trust,
        fingerprint,
        pin_path,
        resolve_address,
        save_pin,
    )

#: public name -> the module that defines it
_MODULES: dict[str, str] = {
    "DEFAULT_TIMEOUT": "cloister.client._cas",
    "CASClient": "cloister.client._cas",
    "Reply": "cloister.client._cas",
    "SessionRef": "cloister.client._cas",
    "SessionVersion": "cloister.client._cas",
    "Attested": "cloister.client._connect",
    "FetchedCertificate": "cloister.client._connect",
    "ShownCertificate": "cloister.client._connect",
    "attest": "cloister.client._connect",
    "connect": "cloister.client._connect",
    "fetch_certificate": "cloister.client._connect",
    "pins_home": "cloister.client._connect",
    "show_certificate": "cloister.client._connect",
    "ClientIdentity": "cloister.client._identity",
    "identity_home": "cloister.client._identity",
    "load_identity": "cloister.client._identity",
    "prepare_session_text": "cloister.client._text",
    "set_top_level_key": "cloister.client._text",
    "DEFAULT_PORT": "cloister.client._trust",
    "CASAddress": "cloister.client._trust",
    "Trust": "cloister.client._trust",
    "find_trust": "cloister.client._trust",
    "fingerprint": "cloister.client._trust",
    "pin_path": "cloister.client._trust",
    "resolve_address": "cloister.client._trust",
    "save_pin": "cloister.client._trust",
    "tls_context": "cloister.client._transport",
    "Transport": "cloister.client._transport",
    "post_json": "cloister.client._transport",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "Attested",
    "CASAddress",
    "CASClient",
    "ClientIdentity",
    "FetchedCertificate",
    "Reply",
    "SessionRef",
    "SessionVersion",
    "ShownCertificate",
    "Transport",
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
    "post_json",
    "prepare_session_text",
    "resolve_address",
    "save_pin",
    "set_top_level_key",
    "show_certificate",
    "tls_context",
]
