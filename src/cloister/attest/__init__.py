"""Attestation: measurement, evidence, the LAS, verifiers, sealing to an ephemeral key.

Flow (``cloister run`` ↔ CAS):

1. the runtime computes its :func:`measure` and creates an ephemeral X25519
   key (:func:`generate_ephemeral_key`, memory only);
2. it asks the CAS for a nonce and the LAS (:class:`LasClient`) for a quote
   whose report data is :func:`report_data` ``(nonce, public key)``;
3. the CAS checks the evidence with the verifier for its type
   (:data:`VERIFIERS`, see :mod:`cloister.cas._decide`) and returns the
   configuration :func:`seal_to` the ephemeral key, which only the runtime
   can :func:`open_sealed`.

Evidence types are plug-ins (:mod:`._plugin`): one subpackage each
(``simulation/``, ``tpm/``, …) with its format, pure verifier, claims,
policy keys and LAS quoter, listed in :mod:`._registry`.

Trust model:  **simulation**: the LAS
signs a quote with a software key; it proves which code was launched to
someone who trusts the host, and nothing against a host administrator.
**tpm**: a TPM 2.0 quote by an attestation key under the endorsement
hierarchy (:class:`TpmVerifier`, LAS ``--tpm``); the platform identity is
hardware-rooted, so it needs no toleration.  In both the measurement, uid and
gid are the LAS's measurement of the process on its socket
(:mod:`._caller`), and the key counts only if the CAS knows it
(:func:`platform_reason`).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names are, for the type checker; imported on first use below
    from cloister.attest._collateral import load_collateral
    from cloister.attest._evidence import (
        FORMAT,
        VERSION,
        canonical_json,
        evidence_type,
        platform_id,
        report_data,
    )
    from cloister.attest._known import platform_reason
    from cloister.attest._las import DEFAULT_LISTEN, LasServer, make_server
    from cloister.attest._las_client import DEFAULT_SOCKET, LasClient, default_las_address
    from cloister.attest._measure import is_python_interpreter, measure
    from cloister.attest._plugin import (
        NO_COLLATERAL,
        Collateral,
        EvidenceType,
        PolicyKey,
        Quoter,
        VerifiedClaims,
        Verifier,
    )
    from cloister.attest._seal import (
        generate_ephemeral_key,
        open_sealed,
        public_key_bytes_of,
        seal_to,
    )
    from cloister.attest.simulation import SIMULATION, SimulationVerifier
    from cloister.attest.tpm import TPM, TpmVerifier, qualifying_data
    from cloister.attest.tpm._quoter import DEFAULT_PCRS, TpmQuoter, parse_pcrs

#: every name, by the module that defines it, imported on first use: ``cloister run``
#: needs a few of them (the LAS client, report data, the ephemeral key), and its
#: start-up time is the service's; the plug-ins (``simulation``, ``tpm``, their
#: formats and ``cryptography.x509``) load only where evidence of their type is handled
_LAZY = {
    "load_collateral": "cloister.attest._collateral",
    **dict.fromkeys(("FORMAT", "VERSION", "canonical_json", "evidence_type", "platform_id",
                     "report_data"), "cloister.attest._evidence"),
    "platform_reason": "cloister.attest._known",
    **dict.fromkeys(("DEFAULT_LISTEN", "LasServer", "make_server"), "cloister.attest._las"),
    **dict.fromkeys(("DEFAULT_SOCKET", "LasClient", "default_las_address"),
                    "cloister.attest._las_client"),
    **dict.fromkeys(("is_python_interpreter", "measure"), "cloister.attest._measure"),
    **dict.fromkeys(("NO_COLLATERAL", "Collateral", "EvidenceType", "PolicyKey", "Quoter",
                     "VerifiedClaims", "Verifier"), "cloister.attest._plugin"),
    **dict.fromkeys(("generate_ephemeral_key", "open_sealed", "public_key_bytes_of",
                     "seal_to"), "cloister.attest._seal"),
    **dict.fromkeys(("SIMULATION", "SimulationVerifier"), "cloister.attest.simulation"),
    **dict.fromkeys(("TPM", "TpmVerifier", "qualifying_data"), "cloister.attest.tpm"),
    **dict.fromkeys(("DEFAULT_PCRS", "TpmQuoter", "parse_pcrs"),
                    "cloister.attest.tpm._quoter"),
}


def __getattr__(name: str) -> Any:
    if name == "VERIFIERS":  # evidence type → verifier, from the plug-in registry
        return importlib.import_module("cloister.attest._registry").verifiers()
    module = _LAZY.get(name)
    if module is None:  # also how `from cloister.attest import tpm` finds the subpackage
        raise AttributeError(f"module 'cloister.attest' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next look-up is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "DEFAULT_LISTEN",
    "DEFAULT_PCRS",
    "DEFAULT_SOCKET",
    "FORMAT",
    "NO_COLLATERAL",
    "SIMULATION",
    "TPM",
    "VERIFIERS",
    "VERSION",
    "Collateral",
    "EvidenceType",
    "LasClient",
    "LasServer",
    "PolicyKey",
    "Quoter",
    "SimulationVerifier",
    "TpmQuoter",
    "TpmVerifier",
    "VerifiedClaims",
    "Verifier",
    "canonical_json",
    "default_las_address",
    "evidence_type",
    "generate_ephemeral_key",
    "is_python_interpreter",
    "load_collateral",
    "make_server",
    "measure",
    "open_sealed",
    "parse_pcrs",
    "platform_id",
    "platform_reason",
    "public_key_bytes_of",
    "qualifying_data",
    "report_data",
    "seal_to",
]
