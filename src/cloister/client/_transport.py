"""A JSON-over-HTTPS call to the CAS, trusting exactly one pinned certificate.

The pinned certificate is the CAS's own CA certificate (what ``cloister cas
show-certificate`` prints); it is the only trust anchor, so a server
certificate the system's CAs signed is refused.  Host names are not checked:
the CAS may be reached by IP address or any name, and only a holder of a key
that CA certified can complete the handshake.

Deliberately not :mod:`cloister.client`: that client loads identities, pins and
YAML handling that ``cloister run`` never needs, and this module is on the start-up
path of every attested service.
"""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any

from cloister import errors

TIMEOUT = 10.0


class Unreachable(errors.CASClientError):
    """The CAS could not be reached at all (worth retrying)."""


def _context(pinned_pem: str) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cadata=pinned_pem)
    except (ssl.SSLError, ValueError):
        raise errors.ConfigError(
            "the pinned CAS certificate (CLOISTER_CAS_CERT) is not a valid PEM certificate"
        ) from None
    context.check_hostname = False  # identity is the pinned certificate itself
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def post_json(host: str, port: int, path: str, body: dict[str, Any], pinned_pem: str) -> Any:
    """POST ``body`` and return the decoded JSON answer; error answers raise by status."""
    context = _context(pinned_pem)  # a clear error for a bad pin, before any network I/O
    conn = http.client.HTTPSConnection(host, port, timeout=TIMEOUT, context=context)
    where = f"CAS at {host}:{port}"
    try:
        try:
            conn.connect()
        except ssl.SSLCertVerificationError:
            raise errors.CASClientError(
                f"{where} did not present the pinned certificate: check CLOISTER_CAS_CERT "
                "and CLOISTER_CAS_ADDR"
            ) from None
        except ssl.SSLError as err:
            raise errors.CASClientError(
                f"{where} does not speak TLS as a CAS does ({err.reason}): is it a cloister "
                "CAS (HTTPS)?"
            ) from None
        except TimeoutError:
            raise Unreachable(f"{where} did not answer within {TIMEOUT:.0f}s") from None
        except OSError as err:
            raise Unreachable(f"cannot reach {where}: {err.strerror or err}") from None
        payload = json.dumps(body).encode()
        try:
            conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as err:
            raise Unreachable(f"{where} dropped the connection: {err}") from None
    finally:
        conn.close()
    return _decode(response.status, data, where)


def _decode(status: int, data: bytes, where: str) -> Any:
    try:
        answer = json.loads(data)
    except ValueError:
        raise errors.CASClientError(f"{where} answered {status} with a non-JSON body") from None
    if status < 400:
        return answer
    error = answer.get("error", {}) if isinstance(answer, dict) else {}
    message = str(error.get("message") or f"HTTP {status}")
    details = [str(d) for d in error.get("details") or []]
    if status == 403 and error.get("code") == "attestation_failed":
        raise errors.AttestationError(message, details=details)
    if status >= 500:
        raise Unreachable(f"{where} failed: {message}", details=details)
    raise errors.CASClientError(f"{where} refused: {message}", details=details)
