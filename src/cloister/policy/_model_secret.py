"""The ``secrets:`` part of the typed session model (SCONE session language 0.3).

Like the rest of :mod:`cloister.policy._model`, every class validates on
construction and raises :class:`~cloister.policy._model_base.Invalid` naming
the field; each SCONE rule is quoted in its message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from cloister.policy._model_base import HEX64_RE, Invalid, check_name, check_session_name


class SecretKind(StrEnum):
    ASCII = "ascii"
    BINARY = "binary"
    PRIVATE_KEY = "private-key"
    X509 = "x509"
    X509_CA = "x509-ca"
    #: a structured value (YAML) standing in for a section of a session (0.3.10)
    CONFIG_FRAGMENT = "config-fragment"


KEY_TYPES = ("P-256", "P-384", "Ed25519", "RSA-2048", "RSA-3072")
DEFAULT_SIZE = 20
MAX_SIZE = 4096

#: SCONE's duration units (``90 days``, ``59d``, ``1 year``, ``12h 30m``); a year is 365 days
_UNIT_SECONDS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "week", "weeks"), 604800),
    **dict.fromkeys(("month", "months"), 2592000),
    **dict.fromkeys(("y", "year", "years"), 31536000),
}
_DURATION_PART_RE = re.compile(r"\s*(\d{1,9})\s*([A-Za-z]+)")


def parse_duration(value: str, field_name: str = "valid_for") -> timedelta:
    """Parse SCONE's durations: ``90 days``, ``59d``, ``3560d``, ``1 year``, ``1y 6months``."""
    total, pos, text = 0, 0, value.strip()
    while pos < len(text):
        match = _DURATION_PART_RE.match(text, pos)
        if match is None or match.group(2).lower() not in _UNIT_SECONDS:
            total = 0
            break
        total += int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
        pos = match.end()
    if total <= 0:
        raise Invalid(
            field_name,
            f"invalid duration {value!r}: write a positive count and a unit, e.g. '90 days' "
            "or '59d'",
        )
    return timedelta(seconds=total)


@dataclass(frozen=True)
class ExportTarget:
    """Where a secret may be imported from: one session, or every session of a namespace."""

    session: str | None = None
    namespace: str | None = None
    session_hash: str | None = None

    def __post_init__(self) -> None:
        if (self.session is None) == (self.namespace is None):
            raise Invalid("export", "an export names exactly one of 'session' or 'namespace'")
        if self.session is not None:
            check_session_name(self.session, "session")
        if self.namespace is not None:
            check_session_name(self.namespace, "namespace")
        if self.session_hash is not None and not HEX64_RE.fullmatch(self.session_hash):
            raise Invalid("session_hash", f"invalid session_hash {self.session_hash!r}")

    def admits(self, session_name: str) -> bool:
        """True when a session called ``session_name`` may import the secret.

        A namespace export admits the namespace session itself and every session in it."""
        if self.session is not None:
            return session_name == self.session
        assert self.namespace is not None
        base = self.namespace.rstrip("/")
        return session_name == base or session_name.startswith(base + "/")


@dataclass(frozen=True)
class ImportSource:
    session: str
    secret: str

    def __post_init__(self) -> None:
        check_session_name(self.session, "session")
        check_name(self.secret, "secret", "secret")


@dataclass(frozen=True)
class SubjectAltNames:
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class Secret:
    """One entry of ``secrets:``.  ``kind`` is None only for an import that omits it.

    A config-fragment's ``value`` is the fragment's YAML text, padded so that it parses at
    the lines and columns it had in its session."""

    name: str
    kind: SecretKind | None
    size: int | None = None
    key_type: str | None = None
    private_key: str | None = None
    issuer: str | None = None
    common_name: str | None = None
    endpoint: str | None = None
    dns: tuple[str, ...] = ()
    san: SubjectAltNames = field(default_factory=SubjectAltNames)
    valid_for: timedelta | None = None
    value: str | None = field(default=None, repr=False)  # may be secret material
    export: tuple[ExportTarget, ...] = ()
    import_: ImportSource | None = None
    export_public: bool = False
    migrate: bool = False

    def __post_init__(self) -> None:
        check_name(self.name, "secret")
        if self.kind is None and self.import_ is None:
            raise Invalid("kind", f"secret {self.name!r} needs a kind: one of {_kinds()}")
        if self.kind is SecretKind.BINARY and self.value is not None:
            text = self.value.strip()
            if len(text) % 2 or any(c not in "0123456789abcdefABCDEF" for c in text):
                raise Invalid("value", f"secret {self.name!r}: a binary value is written as "
                                       "hex digits (an even number of them)")
        if self.import_ is not None and self.value is not None:
            raise Invalid("value", f"secret {self.name!r} is imported and cannot also set a value")
        if self.kind is SecretKind.CONFIG_FRAGMENT and self.value is None and not self.import_:
            raise Invalid("kind", f"secret {self.name!r}: a config-fragment needs a 'value' or "
                                  "an 'import' (SCONE: fragments have no generated value)")
        self._check_kind_fields()
        self._check_certificate_fields()

    @property
    def is_certificate(self) -> bool:
        return self.kind in (SecretKind.X509, SecretKind.X509_CA)

    @property
    def dns_names(self) -> tuple[str, ...]:
        """DNS names from both ``dns`` and ``san: [dns:…]``, in order, without repeats."""
        return tuple(dict.fromkeys((*self.dns, *self.san.dns)))

    def _check_kind_fields(self) -> None:
        kind = self.kind
        sized = kind in (SecretKind.ASCII, SecretKind.BINARY)
        if self.size is not None:
            if not sized:
                raise Invalid("size", f"secret {self.name!r}: 'size' applies to ascii and binary")
            if not 1 <= self.size <= MAX_SIZE:
                raise Invalid(
                    "size", f"secret {self.name!r}: size {self.size} not in 1..{MAX_SIZE}"
                )
        if self.key_type is not None:
            if kind is not SecretKind.PRIVATE_KEY:
                raise Invalid("key_type", f"secret {self.name!r}: 'key_type' is for private-key")
            if self.key_type not in KEY_TYPES:
                raise Invalid(
                    "key_type",
                    f"secret {self.name!r}: unknown key_type {self.key_type!r}; "
                    f"use one of {', '.join(KEY_TYPES)}",
                )
        cert_only = {
            "private_key": self.private_key,
            "issuer": self.issuer,
            "common_name": self.common_name,
            "endpoint": self.endpoint,
            "valid_for": self.valid_for,
            "dns": self.dns or None,
            "san": (self.san.dns or self.san.ips) or None,
        }
        for key, val in cert_only.items():
            if val is not None and kind is not None and not self.is_certificate:
                raise Invalid(key, f"secret {self.name!r}: {key!r} applies to x509 and x509-ca")
        if self.migrate and kind is not None and kind is not SecretKind.PRIVATE_KEY:
            raise Invalid("migrate", f"secret {self.name!r}: 'migrate' applies to private-key")

    def _check_certificate_fields(self) -> None:
        kind = self.kind
        if self.endpoint is not None:
            if self.endpoint not in ("server", "client"):
                raise Invalid(
                    "endpoint",
                    f"secret {self.name!r}: endpoint {self.endpoint!r} is not server|client",
                )
            if kind is SecretKind.X509_CA:
                raise Invalid("endpoint", f"secret {self.name!r}: endpoint is for end-entity x509")
            if self.endpoint == "client" and self.dns_names:
                raise Invalid(
                    "dns", f"secret {self.name!r}: a client certificate takes no dns names"
                )
        if kind is SecretKind.X509_CA:
            for key, given in (("dns", self.dns), ("san", self.san.dns or self.san.ips)):
                if given:
                    raise Invalid(key, f"secret {self.name!r}: {key!r} applies to end-entity "
                                       "certificates only (x509), not to an x509-ca (SCONE)")
        if self.valid_for is not None and (self.import_ is not None or self.value is not None):
            which = "an imported certificate" if self.import_ else "a certificate with an " \
                    "explicit value"
            raise Invalid("valid_for", f"secret {self.name!r}: valid_for does not apply to "
                                       f"{which} (SCONE: only generated certificates are "
                                       "renewed)")
        if (
            self.is_certificate
            and self.private_key is None
            and self.import_ is None
            and self.value is None
        ):
            raise Invalid("private_key", f"secret {self.name!r} ({self.kind}) needs 'private_key'")
        if self.issuer == self.name:
            raise Invalid(
                "issuer",
                f"secret {self.name!r} names itself as issuer: omit 'issuer' for a self-signed CA",
            )


def _kinds() -> str:
    return ", ".join(k.value for k in SecretKind)
