"""Several CAS processes on one port (cloister.cas._processes): what each one admits."""

from __future__ import annotations

import pytest

from cloister import errors
from cloister.cas import Limits
from cloister.cas._processes import check_seal, per_process


def test_each_process_admits_its_share_of_every_rate() -> None:
    limits = Limits(nonce_rate=50, nonce_burst=101, attest_rate=30, attest_burst=7)
    share = per_process(limits, 2)
    assert (share.nonce_rate, share.attest_rate) == (25, 15)
    assert (share.nonce_burst, share.attest_burst) == (51, 4)  # rounded up: never 0
    # what is per process anyway stays as configured
    assert share.max_connections_per_address == limits.max_connections_per_address
    assert share.workers == limits.workers
    assert per_process(limits, 1) is limits


@pytest.mark.parametrize(("seal", "why"), [
    ("shamir", "unsealed by a request only one process would see"),
    ("tpm", "rollback counter is kept by one process"),
])
def test_more_than_one_process_needs_the_file_seal(seal: str, why: str) -> None:
    with pytest.raises(errors.ConfigError, match=why) as refused:
        check_seal(seal, 2)
    assert f"--processes 2 needs the file seal; this CAS has the {seal} seal" in \
        refused.value.message
    check_seal(seal, 1)
    check_seal("file", 4)
