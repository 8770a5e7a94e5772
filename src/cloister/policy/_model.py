"""Typed session model (SCONE session language 0.3).

Every class validates on construction and raises :class:`Invalid` naming the
field and the bad value; the YAML loader turns that into a
:class:`cloister.errors.PolicyError` with the line and column of the value.
Instances are frozen: a loaded session never changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
    check_image_name,
    check_name,
    check_otp_secret,
    check_session_name,
    hex_or_reference,
    resolve_session_path,
)
from cloister.policy._model_secret import (  # re-exported: part of the model
    DEFAULT_SIZE,
    KEY_TYPES,
    MAX_SIZE,
    ExportTarget,
    ImportSource,
    Secret,
    SecretKind,
    SubjectAltNames,
    parse_duration,
)

__all__ = [
    "ATTESTATION_MODES",
    "DEFAULT_SIZE",
    "ENV_NAME_RE",
    "FSPF_UPDATE_POLICIES",
    "HEX32_RE",
    "HEX64_RE",
    "KEY_TYPES",
    "MAX_SIZE",
    "NAME_RE",
    "REFERENCE_ONLY_RE",
    "SPECIAL_ENTRIES",
    "TOLERATIONS",
    "VOLUME_KEY_PREFIX",
    "VOLUME_UPDATE_POLICIES",
    "AccessPolicy",
    "AttestationSecurity",
    "AttestationVariant",
    "ExportTarget",
    "Image",
    "ImageVolume",
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
    "Volume",
    "VolumeExport",
    "VolumeImport",
    "check_absolute_path",
    "check_image_name",
    "check_name",
    "check_session_name",
    "parse_duration",
    "resolve_session_path",
    "volume_key_secret",
]


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
    #: a TOTP second factor for this service (overrides the one of security.attestation)
    one_time_password_shared_secret: str | None = field(default=None, repr=False)
    fspf_update_policy: str | None = None
    #: cloister extension: the uid/gid the workload must run as (the LAS's view of it)
    uid: int | None = None
    gid: int | None = None
    #: cloister extension (debug only): tracebacks of sealed code show its source lines
    debug_tracebacks: bool = False

    def __post_init__(self) -> None:
        check_name(self.name, "service")
        for key, value in (("uid", self.uid), ("gid", self.gid)):
            if value is not None and not 0 <= value <= 2**32 - 2:
                raise Invalid(key, f"service {self.name!r}: {key} {value} is not a user or "
                              "group id (0 to 4294967294)")
        if self.one_time_password_shared_secret is not None:
            check_otp_secret(self.one_time_password_shared_secret)
        if (
            self.fspf_update_policy is not None
            and self.fspf_update_policy not in FSPF_UPDATE_POLICIES
        ):
            raise Invalid(
                "fspf_update_policy",
                f"service {self.name!r}: unknown fspf_update_policy {self.fspf_update_policy!r}; "
                f"use one of {', '.join(FSPF_UPDATE_POLICIES)}",
            )
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
FSPF_UPDATE_POLICIES = ("rollback_protected_reinitializable", "no_rollback_protection")


@dataclass(frozen=True)
class VolumeExport:
    """One ``export:`` entry of a volume: the importing session, and optionally the policy
    it may use and the name (``volume_alias``) it imports the volume by."""

    target: ExportTarget
    update_policy: str | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        if self.target.namespace is not None:
            raise Invalid("export", "a volume is exported to sessions, not to a namespace "
                                    "(SCONE: namespace exports are for secrets only)")
        if self.update_policy is not None and self.update_policy not in VOLUME_UPDATE_POLICIES:
            raise Invalid("update_policy", f"unknown update_policy {self.update_policy!r}; use "
                                           f"one of {', '.join(VOLUME_UPDATE_POLICIES)}")
        if self.alias is not None:
            check_name(self.alias, "volume_alias", "volume_alias")


@dataclass(frozen=True)
class VolumeImport:
    session: str
    volume: str

    def __post_init__(self) -> None:
        check_session_name(self.session, "session")
        check_name(self.volume, "volume", "volume")


@dataclass(frozen=True)
class Volume:
    """A top-level ``volumes:`` entry: an encrypted directory.  Its key is generated by the
    CAS, or given (``fspf_key``: hex or a binary secret's reference), or the exporter's
    (``import``)."""

    name: str
    fspf_key: str | None = field(default=None, repr=False)
    fspf_tag: str | None = None
    export: tuple[VolumeExport, ...] = ()
    import_: VolumeImport | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "volume")
        if self.import_ is not None and (self.fspf_key or self.fspf_tag or self.export):
            raise Invalid("import", f"volume {self.name!r} is imported: omit fspf_key, fspf_tag "
                                    "and export (SCONE: the exporter's key and state are used)")
        if self.fspf_key is not None:
            hex_or_reference(self.fspf_key, HEX64_RE, "fspf_key", "fspf_key")
        if self.fspf_tag is not None:
            hex_or_reference(self.fspf_tag, HEX32_RE, "fspf_tag", "fspf_tag")


#: the CAS keeps each volume's key as a binary secret of this name
VOLUME_KEY_PREFIX = "~volume."


def volume_key_secret(volume: Volume) -> Secret | None:
    """The secret that is ``volume``'s key: 32 generated bytes, or the explicit hex
    ``fspf_key``.  None when the key is another secret (a reference) or imported."""
    if volume.import_ is not None:
        return None
    if volume.fspf_key is None:
        return Secret(name=VOLUME_KEY_PREFIX + volume.name, kind=SecretKind.BINARY, size=32)
    if volume.fspf_key.startswith("$$"):
        return None
    return Secret(name=VOLUME_KEY_PREFIX + volume.name, kind=SecretKind.BINARY,
                  value=volume.fspf_key)


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
        check_image_name(self.name)
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
    #: SCONE features the session uses that cloister's CAS cannot serve (one message each)
    unserved: tuple[str, ...] = ()
    #: what ``session check`` should tell about the session besides errors
    notes: tuple[str, ...] = ()

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    def image(self, name: str) -> Image | None:
        return next((i for i in self.images if i.name == name), None)

    def secret(self, name: str) -> Secret | None:
        return next((s for s in self.secrets if s.name == name), None)

    def volume(self, name: str) -> Volume | None:
        return next((v for v in self.volumes if v.name == name), None)
