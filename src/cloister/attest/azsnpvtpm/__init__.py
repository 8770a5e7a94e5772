"""The ``az-snp-vtpm`` evidence type: an Azure confidential VM's HCL report and vTPM quote.

What it proves: an AMD SEV-SNP CPU launched Azure's paravisor (HCL), which
put the vTPM's attestation key into the report's runtime claims; that key
quoted these PCRs — against the host and its administrator.  Against whom
it is checked: AMD's pinned ARK (the VCEK comes with the evidence or from
the collateral).  What to pin: the PCRs that measure the guest you boot
(``tpm_pcrs``: required), and optionally the paravisor's launch
measurement and TCB (``snp_measurements``, ``snp_min_tcb``).
"""

from cloister.attest._plugin import EvidenceType
from cloister.attest.azsnpvtpm._format import AZ_SNP_VTPM, build_evidence, parse_hcl_report
from cloister.attest.azsnpvtpm._verify import AzSnpVtpmVerifier

EVIDENCE_TYPE = EvidenceType(
    name=AZ_SNP_VTPM,
    verifier=AzSnpVtpmVerifier(),
    summary="AMD's CPU vouches for Azure's paravisor, which vouches for the vTPM that quoted "
    "these PCRs",
)

__all__ = ["AZ_SNP_VTPM", "EVIDENCE_TYPE", "AzSnpVtpmVerifier", "build_evidence",
           "parse_hcl_report"]
