"""Every protective limit of the CAS, with its default, in one place.

:class:`Limits` is to the CAS what tuf's ``UpdaterConfig`` is to an updater:
one frozen dataclass of named settings, each documented where it is
defined.  Change them from Python (``ServerConfig(limits=Limits(nonce_rate=100))``)
or from the command line (``cloister cas serve --limit nonce_rate=100``,
repeatable; :func:`with_overrides` parses ``NAME=VALUE``).  A limit that is hit
is named in the answer, so whoever meets it knows which setting to change.

Client *address* below means the TCP peer address; IPv6 peers are grouped by
their /64 (one host usually owns a whole /64), as ACME servers do.  Behind a
proxy every client has the proxy's address: raise the per-address limits there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cloister import errors


@dataclass(frozen=True)
class Limits:
    # --- connections and requests ---------------------------------------------------
    #: worker threads that run requests (a fixed pool; TLS handshakes and request
    #: headers are read before a request reaches it, so slow clients hold no worker)
    workers: int = 64
    #: seconds from connect (or from a kept-alive connection becoming readable) until
    #: the TLS handshake and the whole request head (line + headers) must have arrived
    header_deadline: float = 10.0
    #: seconds for the whole request body, counted from the end of the headers
    body_deadline: float = 30.0
    #: seconds a kept-alive connection may stay idle, and any single read or write may wait
    idle_timeout: float = 30.0
    #: seconds a worker that has just answered on a kept-alive connection waits for the
    #: connection's next request before handing it back to be watched (a quick client's
    #: next request then costs no thread hand-off); at most half the workers wait at once
    keepalive_linger: float = 0.02
    #: open connections per client address (beyond: closed at accept)
    max_connections_per_address: int = 32
    #: open connections in all (beyond: closed at accept)
    max_connections: int = 1024
    #: request body bytes (413 beyond)
    max_body: int = 1024 * 1024
    #: request line + header bytes (413/414 beyond)
    max_header: int = 64 * 1024

    # --- attestation ------------------------------------------------------------------
    #: seconds a nonce stays valid after it was issued
    nonce_lifetime: float = 60.0
    #: nonces per second per client address (token bucket refill) …
    nonce_rate: float = 50.0
    #: … and the burst a quiet address may use at once; 429 + Retry-After beyond
    nonce_burst: int = 100
    #: attestations (``POST /v1/attest/config``) per second per client address …
    attest_rate: float = 50.0
    #: … and their burst
    attest_burst: int = 100
    #: client addresses whose buckets are remembered (the oldest full ones are forgotten)
    rate_table_size: int = 100_000
    #: sessions whose released configuration stays in memory for the next attestation
    #: (until the session or an import changes; the least recently used are dropped; never
    #: on disk, see ``cloister.cas._release_cache``)
    release_cache_sessions: int = 1000

    # --- audit log ----------------------------------------------------------------------
    #: bytes of ``audit.log`` before it is rotated to ``audit.log.1`` …
    audit_max_bytes: int = 64 * 1024 * 1024
    #: rotated files kept (``audit.log.1`` … ``audit.log.N``); the oldest is deleted,
    #: so the log never takes more than ``audit_max_bytes * (audit_keep + 1)``
    audit_keep: int = 8
    #: characters of any one audited string (longer ones are cut, their length noted)
    audit_field_max: int = 512
    #: anonymous refusals written one by one per minute; the rest of that minute are
    #: counted and written as one summary entry
    audit_anonymous_per_minute: int = 60
    #: audit entries held in memory while the audit log cannot be written (disk full)
    audit_backlog: int = 10_000

    # --- sessions and key generation ------------------------------------------------
    #: secrets (including volume keys) in one session
    max_secrets_per_session: int = 128
    #: session names one identity may create
    max_sessions_per_creator: int = 1000
    #: processes generating RSA keys (elliptic-curve keys take microseconds and are
    #: made in the request's own thread)
    keygen_processes: int = 2
    #: seconds one request may spend generating keys (waiting included); beyond it the
    #: request fails with 503 and nothing is stored
    keygen_budget: float = 60.0
    #: requests generating RSA keys at once; beyond: 503 + Retry-After
    max_keygen_requests: int = 32

    def __post_init__(self) -> None:
        bad = [f.name for f in dataclasses.fields(self) if not getattr(self, f.name) > 0]
        if bad:
            raise errors.ConfigError(
                f"limits must be positive: {', '.join(bad)}",
                details=["every CAS limit is a positive number; see cloister.cas.Limits"],
            )


def with_overrides(limits: Limits, pairs: Iterable[str]) -> Limits:
    """``limits`` with ``NAME=VALUE`` overrides; :class:`errors.ConfigError` naming a bad one."""
    fields = {f.name: f for f in dataclasses.fields(Limits)}
    changes: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in fields:
            raise errors.ConfigError(
                f"unknown CAS limit {pair!r}",
                details=[f"write NAME=VALUE with NAME one of: {', '.join(fields)}"],
            )
        kind = int if fields[name].type in ("int", int) else float
        try:
            changes[name] = kind(raw.strip().replace("_", ""))
        except ValueError:
            raise errors.ConfigError(
                f"CAS limit {name} needs a{'n integer' if kind is int else ' number'}, "
                f"not {raw!r}"
            ) from None
    return dataclasses.replace(limits, **changes)


__all__ = ["Limits", "with_overrides"]
