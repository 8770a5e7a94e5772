"""The ``tdx`` evidence type: an Intel TDX quote (DCAP, ECDSA-256) with its collateral.

What it proves: an Intel CPU and TDX module at the quoted TCB launched a TD
with this MRTD and these RTMRs — against the host and its administrator, who
cannot forge the quote.  Against whom it is checked: the Intel SGX Root CA,
shipped with cloister and pinned by fingerprint, and Intel's TCB info and
QE identity (collateral, given as a directory).  What to pin: the MRTD
(``tdx_mrtds``), the RTMRs that measure what you boot (``tdx_rtmrs``), and
where used MRCONFIGID and MROWNER.
"""

from cloister.attest._plugin import EvidenceType
from cloister.attest.tdx._format import TDX, build_evidence, parse_quote
from cloister.attest.tdx._policy import POLICY_KEYS
from cloister.attest.tdx._quoter import TdxQuoter, make_quoter
from cloister.attest.tdx._verify import TdxVerifier

EVIDENCE_TYPE = EvidenceType(
    name=TDX,
    verifier=TdxVerifier(),
    policy_keys=POLICY_KEYS,
    quoter=make_quoter,
    summary="an Intel CPU signed this TD's MRTD and RTMRs: the host cannot forge it",
)

__all__ = ["EVIDENCE_TYPE", "TDX", "TdxQuoter", "TdxVerifier", "build_evidence",
           "parse_quote"]
