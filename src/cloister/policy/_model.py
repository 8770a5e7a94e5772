"""Typed session model (SCONE session language 0.3).

Every class validates on construction and raises :class:`Invalid` naming the
field and the bad value; the YAML loader turns that into a
:class:`cloister.errors.PolicyError` with the line and column of the value.
Instances are frozen: a loaded session never changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from types import MappingProxyType

from cloister.policy._model_access import (  # re-exported: part of the model
    ATTESTATION_MODES,
    SPECIAL_ENTRIES,
    TOLERATIONS,
    AccessPolicy,
    AttestationSecurity,
    Security,
)
from cloister.policy._model_base import (  # re-exported: part of the model
    ENV_NAME_RE,
    HEX32_RE,
    HEX64_RE,
    NAME_RE,
    REFERENCE_ONLY_RE,
    Invalid,
    check_absolute_path,
    check_name,
    check_session_name,
    hex_or_reference,
)

__all__ = [
    "ATTESTATION_MODES",
    "ENV_NAME_RE",
    "HEX32_RE",
    "HEX64_RE",
    "KEY_TYPES",
    "NAME_RE",
    "REFERENCE_ONLY_RE",
    "SPECIAL_ENTRIES",
    "TOLERATIONS",
    "AccessPolicy",
    "AttestationSecurity",
    "AttestationVariant",
    "ExportTarget",
    "Image",
    "ImportSource",
    "InjectionFile",
    "Invalid",
    "Secret",
    "SecretKind",
    "Security",
    "Service",
    "Session",
    "Signer",
    "SubjectAltNames",
    "check_absolute_path",
    "check_name",
    "check_session_name",
    "parse_duration",
]


# --- secrets ----------------------------------------------------------------


class SecretKind(StrEnum):
    ASCII = "ascii"
    BINARY = "binary"
    PRIVATE_KEY = "private-key"
    X509 = "x509"
    X509_CA = "x509-ca"


KEY_TYPES = ("P-256", "P-384", "Ed25519", "RSA-2048", "RSA-3072")
DEFAULT_SIZE = 20
MAX_SIZE = 4096

_DURATION_RE = re.compile(r"(\d+)\s*(second|minute|hour|day|week|year)s?")
_UNIT_SECONDS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 604800,
    "year": 31536000,
}


def parse_duration(value: str, field_name: str = "valid_for") -> timedelta:
    """Parse ``90 days`` / ``12 hours`` / ``1 year`` (SCONE's ``valid_for``)."""
    match = _DURATION_RE.fullmatch(value.strip())
    if match is None or int(match.group(1)) == 0:
        raise Invalid(
            field_name,
            f"invalid duration {value!r}: write a positive count and a unit, e.g. '90 days'",
        )
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


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
        """True when a session called ``session_name`` may import the secret."""
        if self.session is not None:
            return session_name == self.session
        assert self.namespace is not None
        return session_name.startswith(self.namespace.rstrip("/") + "/")


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
    """One entry of ``secrets:``.  ``kind`` is None only for an import that omits it."""

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
        self._check_kind_fields()

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
        if self.migrate and kind is not None and kind is not SecretKind.PRIVATE_KEY:
            raise Invalid("migrate", f"secret {self.name!r}: 'migrate' applies to private-key")


def _kinds() -> str:
    return ", ".join(k.value for k in SecretKind)


# --- services and images ------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    mrsigner: str
    isvprodid: int | None = None
    isvsvn_min: int | None = None
    isvsvn_max: int | None = None


@dataclass(frozen=True)
class AttestationVariant:
    """One alternative of ``attestation:``; every factor it names must hold."""

    mrenclaves: tuple[str, ...] = ()
    signer: Signer | None = None

    def __post_init__(self) -> None:
        if not self.mrenclaves and self.signer is None:
            raise Invalid("attestation", "an attestation variant needs 'mrenclave' or 'signer'")
        for value in self.mrenclaves:
            hex_or_reference(value, HEX64_RE, "mrenclave", "mrenclave")


@dataclass(frozen=True)
class Service:
    name: str
    image_name: str | None = None
    command: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    pwd: str | None = None
    fspf_path: str | None = None
    fspf_key: str | None = None
    fspf_tag: str | None = None
    attestation: tuple[AttestationVariant, ...] = ()
    platforms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.name, "service")
        for arg in self.command:
            if "\0" in arg:
                raise Invalid("command", f"service {self.name!r}: command contains a NUL byte")
        for key in self.environment:
            if not ENV_NAME_RE.fullmatch(key):
                raise Invalid("environment", f"service {self.name!r}: bad variable name {key!r}")
        if self.pwd is not None:
            check_absolute_path(self.pwd, "pwd")
        if self.fspf_path is not None:
            check_absolute_path(self.fspf_path, "fspf_path")
        if self.fspf_key is not None:
            hex_or_reference(self.fspf_key, HEX64_RE, "fspf_key", "fspf_key")
        if self.fspf_tag is not None:
            hex_or_reference(self.fspf_tag, HEX32_RE, "fspf_tag", "fspf_tag")
        for platform in self.platforms:
            hex_or_reference(platform, HEX64_RE, "platform id", "platforms")

    @property
    def mrenclaves(self) -> tuple[str, ...]:
        """Every measurement any variant accepts (lower-case hex)."""
        return tuple(m.lower() for v in self.attestation for m in v.mrenclaves)


@dataclass(frozen=True)
class InjectionFile:
    """A file the runtime shows the program; ``content`` None means read ``path`` at start."""

    path: str
    content: str | None = None
    permission: int = 0o700

    def __post_init__(self) -> None:
        check_absolute_path(self.path, "path")
        if not 0 <= self.permission <= 0o7777:
            raise Invalid("permission", f"permission {oct(self.permission)} is not a file mode")


VOLUME_UPDATE_POLICIES = ("rollback_protected", "ephemeral", "no_rollback_protection")


@dataclass(frozen=True)
class Volume:
    """A top-level ``volumes:`` entry: an encrypted directory whose key the CAS generates."""

    name: str

    def __post_init__(self) -> None:
        check_name(self.name, "volume")


#: the CAS keeps each volume's key as a generated binary secret of this name
VOLUME_KEY_PREFIX = "~volume."


def volume_key_secret(volume: Volume) -> Secret:
    """The (never exported) 32-byte secret that is ``volume``'s key."""
    return Secret(name=VOLUME_KEY_PREFIX + volume.name, kind=SecretKind.BINARY, size=32)


@dataclass(frozen=True)
class ImageVolume:
    """An image's ``volumes:`` entry: volume ``name`` mounted at ``path``."""

    name: str
    path: str
    update_policy: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "volume")
        check_absolute_path(self.path, "path")
        if self.update_policy is not None and self.update_policy not in VOLUME_UPDATE_POLICIES:
            raise Invalid(
                "update_policy",
                f"volume {self.name!r}: unknown update_policy {self.update_policy!r}; use one "
                f"of {', '.join(VOLUME_UPDATE_POLICIES)}",
            )


@dataclass(frozen=True)
class Image:
    name: str
    injection_files: tuple[InjectionFile, ...] = ()
    volumes: tuple[ImageVolume, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.name, "image")
        seen: set[str] = set()
        for injected in self.injection_files:
            if injected.path in seen:
                raise Invalid("path", f"image {self.name!r}: {injected.path} is injected twice")
            seen.add(injected.path)


@dataclass(frozen=True)
class Session:
    """A loaded, validated session.  ``digest`` is the hex SHA-256 of its canonical form."""

    name: str
    version: str | None
    predecessor: str | None
    creator: str | None
    access_policy: AccessPolicy
    services: tuple[Service, ...]
    images: tuple[Image, ...]
    secrets: tuple[Secret, ...]
    security: Security
    digest: str
    volumes: tuple[Volume, ...] = ()

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    def image(self, name: str) -> Image | None:
        return next((i for i in self.images if i.name == name), None)

    def secret(self, name: str) -> Secret | None:
        return next((s for s in self.secrets if s.name == name), None)
