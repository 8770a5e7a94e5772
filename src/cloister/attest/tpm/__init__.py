"""The ``tpm`` evidence type: a TPM 2.0 quote by an attestation key (AK).

The platform identity is rooted in a TPM: the AK is pinned by the policy's
``platforms:`` (enrolled with ``cloister las enroll``).  The measurement is
still asserted by the LAS unless PCRs pinned with ``tpm_pcrs`` cover it.
"""

from cloister.attest._plugin import EvidenceType
from cloister.attest.tpm._format import TPM, qualifying_data
from cloister.attest.tpm._policy import TPM_PCRS
from cloister.attest.tpm._quoter import DEFAULT_PCRS, TpmQuoter, make_quoter, parse_pcrs
from cloister.attest.tpm._verify import TpmVerifier

EVIDENCE_TYPE = EvidenceType(
    name=TPM,
    verifier=TpmVerifier(),
    policy_keys=(TPM_PCRS,),
    quoter=make_quoter,
    summary="a TPM attestation key the policy pins signed these claims and PCRs",
)

__all__ = [
    "DEFAULT_PCRS",
    "EVIDENCE_TYPE",
    "TPM",
    "TPM_PCRS",
    "TpmQuoter",
    "TpmVerifier",
    "make_quoter",
    "parse_pcrs",
    "qualifying_data",
]
