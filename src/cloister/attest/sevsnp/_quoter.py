"""The LAS side of ``sev-snp``: reports from configfs-tsm or ``/dev/sev-guest``.

REPORT_DATA is ``report_data ‖ runtime_binding(measurement, fspf tag, uid, gid)`` (64
bytes), so the CPU-signed report binds the CAS nonce, the ephemeral key and
the claims the LAS was asked to quote.  Options (``cloister las serve
--evidence sev-snp --quoter-option KEY=VALUE``): ``tsm`` (the configfs-tsm
report directory, default ``/sys/kernel/config/tsm/report``), ``device``
(use ``/dev/sev-guest`` at this path instead), ``vmpl`` (privilege level).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from cloister import errors
from cloister.attest import _evidence, _tsm, _x509
from cloister.attest.sevsnp import _device
from cloister.attest.sevsnp import _format as fmt


class SnpQuoter:
    """Quotes ``sev-snp`` evidence through ``tsm`` (configfs-tsm) or ``device``."""

    evidence_type = fmt.SEV_SNP

    def __init__(self, *, tsm: Path | None = _tsm.DEFAULT_TSM_REPORT, device: Path | None = None,
                 vmpl: int | None = None) -> None:
        self.tsm, self.device, self.vmpl = tsm, device, vmpl
        report, table = self._report(bytes(64))
        certs = fmt.parse_cert_table(table) if table else {}
        signer = _x509.load_certificate(certs.get("vcek") or certs.get("vlek") or b"")
        if signer is not None:
            self.platform_id = _evidence.platform_id(_evidence.spki_der(signer.public_key()))
            self.public_key_pem = signer.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        else:  # no certificate table: the CAS finds the VCEK in its collateral
            chip = fmt.parse_report(report).chip_id
            self.platform_id = hashlib.sha256(b"sev-snp chip\0" + chip).hexdigest()
            self.public_key_pem = ""

    def _report(self, data: bytes) -> tuple[bytes, bytes | None]:
        if self.device is not None:
            return _device.request(self.device, data, self.vmpl or 0), None
        assert self.tsm is not None
        answer = _tsm.request(self.tsm, data, provider="sev_guest", privlevel=self.vmpl)
        return answer.outblob, answer.auxblob

    def quote(self, *, measurement: str, fspf_tag: str | None, report_data_hex: str,
              uid: int, gid: int) -> bytes:
        problems = _evidence.check_claim_values(measurement, fspf_tag, report_data_hex)
        problems += _evidence.check_ids(uid, gid)
        if problems:
            raise errors.EvidenceError("cannot quote malformed claims", details=problems)
        data = bytes.fromhex(report_data_hex) + fmt.runtime_binding(measurement, fspf_tag,
                                                                     uid, gid)
        report, table = self._report(data)
        claims = {"type": fmt.SEV_SNP, "measurement": measurement, "fspf_tag": fspf_tag,
                  "report_data": report_data_hex, "platform_id": self.platform_id,
                  "uid": uid, "gid": gid}
        return fmt.build_evidence(claims, report, table)


def make_quoter(state: Path, options: Mapping[str, str]) -> SnpQuoter:
    """The quoter for ``cloister las serve --evidence sev-snp`` (options ``tsm``, ``device``,
    ``vmpl``); the state directory is not used: the CPU holds the key."""
    del state
    unknown = sorted(set(options) - {"tsm", "device", "vmpl"})
    if unknown:
        raise errors.ConfigError(f"unknown sev-snp quoter option {unknown[0]!r}",
                                 details=["options: tsm=DIR, device=/dev/sev-guest, vmpl=N"])
    vmpl = options.get("vmpl")
    if vmpl is not None and (not vmpl.isdigit() or int(vmpl) > 3):
        raise errors.ConfigError(f"vmpl {vmpl!r} is not 0..3")
    device = Path(options["device"]) if "device" in options else None
    tsm = Path(options.get("tsm", str(_tsm.DEFAULT_TSM_REPORT)))
    return SnpQuoter(tsm=None if device else tsm, device=device,
                     vmpl=None if vmpl is None else int(vmpl))
