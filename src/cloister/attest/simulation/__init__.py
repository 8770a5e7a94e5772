"""The ``simulation`` evidence type: the LAS signs runtime claims with a software key.

It proves which code was launched to someone who trusts the host, and
nothing against a host administrator (who can read the key or ask the LAS
for any claims): a session accepts it only with ``debug-mode`` tolerated or
``mode: none``, and only from a quoting key the CAS knows (``platforms:``).
"""

from cloister.attest._plugin import EvidenceType
from cloister.attest.simulation._format import (
    SIGNATURE_CONTEXT,
    SIMULATION,
    parse_simulation,
    sign_simulation,
)
from cloister.attest.simulation._quoter import (
    KEY_FILE,
    SimulationQuoter,
    load_or_create_platform_key,
    make_quoter,
)
from cloister.attest.simulation._verify import SimulationVerifier

EVIDENCE_TYPE = EvidenceType(
    name=SIMULATION,
    verifier=SimulationVerifier(),
    quoter=make_quoter,
    summary="the LAS's software key signed these claims: proves nothing against the host",
)

__all__ = [
    "EVIDENCE_TYPE",
    "KEY_FILE",
    "SIGNATURE_CONTEXT",
    "SIMULATION",
    "SimulationQuoter",
    "SimulationVerifier",
    "load_or_create_platform_key",
    "make_quoter",
    "parse_simulation",
    "sign_simulation",
]
