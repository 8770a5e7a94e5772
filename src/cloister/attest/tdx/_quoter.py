"""The LAS side of ``tdx``: quotes from configfs-tsm (provider ``tdx_guest``).

REPORTDATA is ``report_data ‖ runtime_binding(measurement, fspf tag, uid, gid)``.
Option (``--quoter-option tsm=DIR``): the configfs-tsm report directory.
The older ``/dev/tdx_guest`` gives only a TDREPORT, which a quote generation
service must turn into a quote; cloister does not speak to one, so use
configfs-tsm (Linux 6.7+).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from cloister import errors
from cloister.attest import _evidence, _tsm, _x509
from cloister.attest.tdx import _format as fmt


class TdxQuoter:
    """Quotes ``tdx`` evidence through the configfs-tsm tree at ``tsm``."""

    evidence_type = fmt.TDX

    def __init__(self, tsm: Path = _tsm.DEFAULT_TSM_REPORT) -> None:
        self.tsm = tsm
        probe = fmt.parse_quote(self._quote(bytes(64)))
        chain = _x509.load_certificates(probe.pck_chain_pem)
        if not chain:
            raise errors.EvidenceError("the TDX quote carries no PCK certificate")
        key = chain[0].public_key()
        self.platform_id = _evidence.platform_id(_evidence.spki_der(key))
        self.public_key_pem = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def _quote(self, data: bytes) -> bytes:
        return _tsm.request(self.tsm, data, provider="tdx_guest").outblob

    def quote(self, *, measurement: str, fspf_tag: str | None, report_data_hex: str,
              uid: int, gid: int) -> bytes:
        problems = _evidence.check_claim_values(measurement, fspf_tag, report_data_hex)
        problems += _evidence.check_ids(uid, gid)
        if problems:
            raise errors.EvidenceError("cannot quote malformed claims", details=problems)
        data = bytes.fromhex(report_data_hex) + _evidence.runtime_binding(
            fmt.TDX, measurement, fspf_tag, uid, gid)
        claims = {"type": fmt.TDX, "measurement": measurement, "fspf_tag": fspf_tag,
                  "report_data": report_data_hex, "platform_id": self.platform_id,
                  "uid": uid, "gid": gid}
        return fmt.build_evidence(claims, self._quote(data))


def make_quoter(state: Path, options: Mapping[str, str]) -> TdxQuoter:
    """The quoter for ``cloister las serve --evidence tdx`` (option ``tsm``)."""
    del state
    unknown = sorted(set(options) - {"tsm"})
    if unknown:
        raise errors.ConfigError(f"unknown tdx quoter option {unknown[0]!r}",
                                 details=["options: tsm=DIR"])
    return TdxQuoter(Path(options.get("tsm", str(_tsm.DEFAULT_TSM_REPORT))))
