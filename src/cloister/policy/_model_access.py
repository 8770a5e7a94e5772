"""Access policy and ``security:`` of a session (part of the typed model).

Like the rest of :mod:`cloister.policy._model`, every class validates on
construction and raises :class:`~cloister.policy._model_base.Invalid` naming
the field and the bad value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cloister.policy._model_base import Invalid, check_otp_secret

SPECIAL_ENTRIES = ("CREATOR", "ANY", "NONE")


@dataclass(frozen=True)
class AccessPolicy:
    """Entries are ``CREATOR``/``ANY``/``NONE``, key hashes, PEM certificates or references.

    Invariant: ``ANY`` and ``NONE`` stand alone in their list.
    """

    read: tuple[str, ...] = ("CREATOR",)
    update: tuple[str, ...] = ("CREATOR",)
    create_sessions: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for key, entries in (
            ("read", self.read),
            ("update", self.update),
            ("create_sessions", self.create_sessions or ()),
        ):
            for alone in ("ANY", "NONE"):
                if alone in entries and len(entries) > 1:
                    raise Invalid(key, f"access_policy.{key}: {alone} must be the only entry")
            if not entries and key != "create_sessions":
                raise Invalid(key, f"access_policy.{key} is empty: write NONE to allow nobody")

    @property
    def effective_create_sessions(self) -> tuple[str, ...]:
        """``create_sessions`` defaults to the ``update`` list (SCONE 0.3.5)."""
        return self.update if self.create_sessions is None else self.create_sessions


TOLERATIONS = (
    "debug-mode",
    "hyperthreading",
    "insecure-igpu",
    "software-hardening-needed",
    "aepic-leak",
    "insecure-configuration",
    "outdated-tcb",
    "maa-managed-tcb",
)
ATTESTATION_MODES = ("hardware", "none", "maa")
_ADVISORY_RE = re.compile(r"INTEL-SA-\d{5}")


@dataclass(frozen=True)
class AttestationSecurity:
    """``security.attestation``.  ``extensions`` holds cloister's extension keys (reference
    values such as ``tpm_pcrs``), validated by the evidence-type plug-in that owns each
    (see :mod:`._extensions`)."""

    mode: str = "hardware"
    tolerate: frozenset[str] = frozenset()
    ignore_advisories: tuple[str, ...] = ()
    extensions: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: a TOTP second factor for every service (SCONE 0.3.8): base32, or a reference
    one_time_password_shared_secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.one_time_password_shared_secret is not None:
            check_otp_secret(self.one_time_password_shared_secret)
        if self.mode not in ATTESTATION_MODES:
            raise Invalid(
                "mode",
                f"unknown attestation mode {self.mode!r}; use one of "
                f"{', '.join(ATTESTATION_MODES)}",
            )
        for item in self.tolerate:
            if item not in TOLERATIONS:
                raise Invalid(
                    "tolerate", f"unknown toleration {item!r}; use one of {', '.join(TOLERATIONS)}"
                )
        for advisory in self.ignore_advisories:
            # '*' without debug-mode loads (SCONE's own operator policies use it); SCONE
            # ignores the wildcard for production enclaves, and cloister's evidence types
            # carry no Intel advisories, so it changes no decision here
            if advisory != "*" and not _ADVISORY_RE.fullmatch(advisory):
                raise Invalid(
                    "ignore_advisories",
                    f"invalid advisory {advisory!r}: expected INTEL-SA-NNNNN or '*'",
                )


@dataclass(frozen=True)
class Security:
    """``security:``.  ``service_access_token``: the workload must present it
    (``SCONE_SERVICE_ACCESS_TOKEN``); ``singleton_enclaves``: at most one attested instance
    of a service holds its configuration at a time."""

    attestation: AttestationSecurity = field(default_factory=AttestationSecurity)
    service_access_token: str | None = field(default=None, repr=False)
    singleton_enclaves: bool = False

    def __post_init__(self) -> None:
        if self.service_access_token is not None and not self.service_access_token:
            raise Invalid("service_access_token", "security.service_access_token is empty")
