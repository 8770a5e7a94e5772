"""The ``sev-snp`` evidence type: an AMD SEV-SNP attestation report (VCEK or VLEK signed).

What it proves: an AMD CPU (Milan, Genoa or Turin, at the reported TCB)
launched a guest with this launch measurement and guest policy — against
the host and its administrator, who cannot forge the CPU's signature.
Against whom it is checked: AMD's ARK for the product, shipped with
cloister and pinned by fingerprint.  What to pin: the launch measurement
(``snp_measurements``), a minimum TCB (``snp_min_tcb``), and where it
matters the VMPLs (``snp_vmpls``) and host data (``snp_host_data``).
"""

from cloister.attest._plugin import EvidenceType
from cloister.attest.sevsnp._format import SEV_SNP, build_cert_table, parse_report
from cloister.attest.sevsnp._policy import POLICY_KEYS
from cloister.attest.sevsnp._quoter import SnpQuoter, make_quoter
from cloister.attest.sevsnp._verify import SnpVerifier

EVIDENCE_TYPE = EvidenceType(
    name=SEV_SNP,
    verifier=SnpVerifier(),
    policy_keys=POLICY_KEYS,
    quoter=make_quoter,
    summary="an AMD CPU signed this guest's launch measurement: the host cannot forge it",
)

__all__ = ["EVIDENCE_TYPE", "SEV_SNP", "SnpQuoter", "SnpVerifier", "build_cert_table",
           "parse_report"]
