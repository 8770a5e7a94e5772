"""SCONE 0.3 language facts the loader needs: versions, and the features cloister cannot serve.

A key or value listed here is part of SCONE's session language (SconeDocs,
CAS_session_lang_0_3, v0.3.11).  ``session check`` accepts a session using
one and prints one warning per feature; the CAS refuses to create it (422
naming the feature).  A key that is neither known nor listed here stays an
error: a typo in a security policy never passes.
"""

from __future__ import annotations

import re

#: versions the loader accepts: 0.3 and 0.3.x
VERSION_RE = re.compile(r"0\.3(\.\d{1,3})?")

#: what changed in 0.3, for sessions written in 0.1/0.2 syntax (SCONE's changelog for 0.3.0)
OLD_SYNTAX = (
    "0.3 changed how other sessions are named in import/export, requires a private_key for "
    "x509 secrets, and lists certificate key hashes in access policies"
)

_AZURE_KV = "it would fetch secrets from Microsoft Azure Key Vault, which this CAS cannot reach"
_REMOTE = "it names a session on another CAS; cloister's CAS imports only from its own sessions"
_SIGNED = (
    "session signing keys: cloister's CAS authenticates uploads by TLS client certificate only"
)

#: place → key → why cloister's CAS cannot serve it
UNSERVED_KEYS: dict[str, dict[str, str]] = {
    "a service": {
        "persistency": "SCONE's per-service persistency state is undocumented; cloister keeps "
        "no such state",
    },
    "a secret": {
        "import_akv": _AZURE_KV,
        "tenant_id": "aad-token secrets need Microsoft Azure Active Directory",
        "client_id": "aad-token secrets need Microsoft Azure Active Directory",
        "application_secret": "aad-token secrets need Microsoft Azure Active Directory",
        "certificate_thumbprint": "aad-token secrets need Microsoft Azure Active Directory",
    },
    "import": {"cas_url": _REMOTE, "cas_key": _REMOTE, "cas_software_key": _REMOTE},
    "export": {"cas_url": _REMOTE, "cas_key": _REMOTE, "cas_software_key": _REMOTE},
    "security.attestation": {
        "url": "mode maa (Microsoft Azure Attestation) needs Azure's attestation service",
        "certificates": "mode maa (Microsoft Azure Attestation) needs Azure's attestation "
        "service",
        "min_rsa_signing_key_size": "mode maa (Microsoft Azure Attestation) needs Azure's "
        "attestation service",
        "trusted_scone_qe_pubkeys": "there are no SCONE quoting enclaves here; pin platforms "
        "with a service's platforms: instead",
    },
}

#: secret kinds of SCONE's language that cloister does not generate
UNSERVED_KINDS: dict[str, str] = {
    "aad-token": "Microsoft Azure Active Directory tokens need Azure, which this CAS cannot "
    "reach",
    "pgp-key": "cloister does not generate OpenPGP keys",
}

#: attestation modes of SCONE's language that cloister's CAS does not verify
UNSERVED_MODES: dict[str, str] = {
    "maa": "Microsoft Azure Attestation tokens are not verified by this CAS; use hardware "
    "(the default) with a cloister evidence type, or none",
}

REMOTE_CAS = _REMOTE
CREATOR_SIGNER = _SIGNED
ACCESS_SIGNER = _SIGNED
GOVERNANCE = (
    "governance rules (require-all, require-at-least-N) combine session signers, which "
    "cloister's CAS does not accept"
)
AKV_BACKEND = "it would keep the session's secrets in Microsoft Azure Key Vault, which this " \
    "CAS cannot reach (cloister keeps them sealed in its own store)"


def unserved_message(feature: str, reason: str) -> str:
    return f"{feature} is part of SCONE's language; cloister's CAS cannot serve it: {reason}"
