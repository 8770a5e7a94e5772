"""A test SEV-SNP signer: its own ARK → ASK → VCEK and reports laid out as AMD's.

Used where no SNP hardware can run: the test root is configured as a trusted
root (``trusted-roots/sev-snp/``) only in the tests that use it, so the
verifier and the decision run exactly as for the real reports.
"""

from __future__ import annotations

import datetime as dt
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from cloister.attest import Collateral
from cloister.attest.sevsnp import build_cert_table

_OID = "1.3.6.1.4.1.3704.1."
NOT_BEFORE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2034, 1, 1, tzinfo=dt.UTC)
AT = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cloister test signer"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _der_int(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def _ia5(text: str) -> bytes:
    return bytes([0x16, len(text)]) + text.encode()


def _cert(subject: str, issuer: str, public_key: object, signer: rsa.RSAPrivateKey,
          extensions: dict[str, bytes] | None = None) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(public_key).serial_number(x509.random_serial_number())  # type: ignore[arg-type]
               .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER))
    for oid, value in (extensions or {}).items():
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), critical=False)
    return builder.sign(signer, hashes.SHA384(), rsa_padding=_PSS)


@dataclass
class SnpSigner:
    """ARK-Milan/ASK of a test root, and a VCEK for ``chip_id`` at ``tcb``."""

    chip_id: bytes = bytes(range(64))
    tcb: dict[str, int] = field(default_factory=lambda: {"bootloader": 3, "tee": 0, "snp": 8,
                                                          "microcode": 115})

    def __post_init__(self) -> None:
        self.ark_key = rsa.generate_private_key(65537, 2048)
        self.ask_key = rsa.generate_private_key(65537, 2048)
        self.vcek_key = ec.generate_private_key(ec.SECP384R1())
        self.ark = _cert("ARK-Milan", "ARK-Milan", self.ark_key.public_key(), self.ark_key)
        self.ask = _cert("SEV-Milan", "ARK-Milan", self.ask_key.public_key(), self.ark_key)
        ext = {_OID + "2": _ia5("Milan-B0"), _OID + "4": self.chip_id}
        for part, oid in (("bootloader", "3.1"), ("tee", "3.2"), ("snp", "3.3"),
                          ("microcode", "3.8")):
            ext[_OID + oid] = _der_int(self.tcb[part])
        self.vcek = _cert("SEV-VCEK", "SEV-Milan", self.vcek_key.public_key(), self.ask_key, ext)

    def tcb_value(self) -> int:
        t = self.tcb
        return int.from_bytes(bytes([t["bootloader"], t["tee"], 0, 0, 0, 0, t["snp"],
                                     t["microcode"]]), "little")

    def roots_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.ask, self.ark))

    def collateral(self, *, with_vcek: bool = False) -> Collateral:
        """Collateral trusting this signer's root (and holding its VCEK, if asked)."""
        files = {"trusted-roots/sev-snp/test-milan.pem": self.roots_pem()}
        if with_vcek:
            files["sev-snp/vcek.der"] = self.vcek.public_bytes(serialization.Encoding.DER)
        return Collateral(files)

    def vcek_der(self) -> bytes:
        return self.vcek.public_bytes(serialization.Encoding.DER)

    def report(self, report_data: bytes, *, measurement: bytes = b"\x5a" * 48,
               policy: int = 0x30000, vmpl: int = 0, version: int = 3) -> bytes:
        """A signed SNP report (Milan CPUID) carrying ``report_data`` (64 bytes)."""
        raw = bytearray(0x4A0)
        tcb = self.tcb_value()
        struct.pack_into("<IIQ", raw, 0, version, 1, policy)
        struct.pack_into("<IIQQI", raw, 0x30, vmpl, 1, tcb, 1, 0)
        raw[0x50:0x90] = report_data.ljust(64, b"\0")
        raw[0x90:0xC0] = measurement
        struct.pack_into("<Q", raw, 0x180, tcb)
        raw[0x188:0x18B] = bytes([0x19, 0x01, 0x01])
        raw[0x1A0:0x1E0] = self.chip_id
        struct.pack_into("<Q", raw, 0x1E0, tcb)
        struct.pack_into("<Q", raw, 0x1F0, tcb)
        signature = self.vcek_key.sign(bytes(raw[:0x2A0]), ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(signature)
        raw[0x2A0:0x2E8] = r.to_bytes(72, "little")
        raw[0x2E8:0x330] = s.to_bytes(72, "little")
        return bytes(raw)


class FakeTsm:
    """A fake configfs-tsm report tree served by ``signer`` in a thread (stop() joins it).

    Like the kernel it fills each new entry with ``provider`` and ``generation``;
    on each new ``inblob`` it writes ``outblob`` (the signed report) and
    ``auxblob`` (the certificate table with the VCEK), then bumps ``generation``.
    """

    def __init__(self, root: Path, signer: SnpSigner) -> None:
        self.root, self.signer = root, signer
        self.root.mkdir(parents=True, exist_ok=True)
        self._seen: dict[Path, bytes] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.reports = 0

    def __enter__(self) -> FakeTsm:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _serve(self) -> None:
        while not self._stop.wait(0.005):
            for entry in [p for p in self.root.iterdir() if p.is_dir()]:
                try:
                    self._step(entry)
                except OSError:
                    continue  # the quoter removed it meanwhile

    def _step(self, entry: Path) -> None:
        if not (entry / "generation").exists():
            (entry / "provider").write_text("sev_guest\n")
            (entry / "generation").write_text("0\n")
        inblob = entry / "inblob"
        if not inblob.exists():
            return
        data = inblob.read_bytes()
        stamp = data + str(inblob.stat().st_mtime_ns).encode()
        if self._seen.get(entry) == stamp or len(data) != 64:
            return
        self._seen[entry] = stamp
        (entry / "outblob").write_bytes(self.signer.report(data))
        (entry / "auxblob").write_bytes(build_cert_table({"vcek": self.signer.vcek_der()}))
        generation = int((entry / "generation").read_text() or "0")
        (entry / "generation").write_text(f"{generation + 1}\n")
        self.reports += 1
