"""The LAS side of ``tpm`` evidence: TPM2_Quote through tpm2-pytss (ESAPI).

The attestation key (AK) is a *primary* restricted ECC P-256 ECDSA/SHA-256
signing key of the endorsement hierarchy.  A primary key is derived from the
hierarchy's seed and the template, so the same TPM yields the same AK on
every start: nothing secret is persisted.  The LAS state directory keeps the
AK's TPMT_PUBLIC (``tpm-ak.pub``) from the first start and refuses to serve
when the TPM later yields another key (another TPM, or its endorsement seed
was changed) — the platform id pinned in policies would no longer match.

Every operation opens the TCTI, creates the AK, uses it and flushes it:
a raw swtpm socket has no resource manager, so no object slot may leak, and
a real ``/dev/tpmrm0`` is shared with other users.  Operations are
serialised by a lock (a swtpm socket serves one connection at a time).

tpm2-pytss needs the tss2 libraries (Debian: ``libtss2-dev``); it is
imported only when a TPM is used, so the rest of cloister works without it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from cloister import errors
from cloister._files import write_private_file
from cloister.attest import _evidence
from cloister.attest.tpm import _format as fmt

AK_FILE = "tpm-ak.pub"
DEFAULT_PCRS = tuple(range(8))
#: TCG NV indices of EK certificates (RSA 2048, ECC P-256)
_EK_CERT_INDICES = (0x01C00002, 0x01C0000A)
_PCR_RETRIES = 5
NO_EK_CERTIFICATE = "no EK certificate in the TPM (as with swtpm): the AK's TPM residency " \
                    "rests on enrolment, not on a manufacturer chain"


def parse_pcrs(text: str) -> tuple[int, ...]:
    """``"0-7"``, ``"0,1,7"`` or ``"sha256:0-7,10"`` → sorted PCR indices (SHA-256 bank)."""
    pcrs: set[int] = set()
    for part in text.removeprefix("sha256:").split(","):
        match = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", part)
        if match is None or (match[2] is not None and int(match[2]) < int(match[1])):
            pcrs = set()
            break
        pcrs.update(range(int(match[1]), int(match[2] or match[1]) + 1))
    if not pcrs or not all(0 <= p <= 23 for p in pcrs):
        raise errors.ConfigError(f"bad PCR selection {text!r}",
                                 details=["write e.g. 0-7 or sha256:0,1,7 (PCRs 0 to 23)"])
    return tuple(sorted(pcrs))


def _pytss() -> Any:
    # the tss2 libraries log every failed probe (e.g. an absent EK certificate) to
    # stderr; errors that matter reach the user as cloister errors instead
    os.environ.setdefault("TSS2_LOG", "all+NONE")
    try:
        return importlib.import_module("tpm2_pytss")
    except ImportError as exc:
        raise errors.ConfigError(
            f"TPM support needs tpm2-pytss, which cannot be imported: {exc}",
            details=["apt-get install libtss2-dev && pip install tpm2-pytss"],
        ) from None


class TpmQuoter:
    """Quotes through the TPM at ``tcti`` (``device:/dev/tpmrm0``, ``swtpm:port=2321``…)."""

    evidence_type = fmt.TPM

    def __init__(self, tcti: str, state: Path | None, pcrs: tuple[int, ...] = DEFAULT_PCRS) -> None:
        self.tcti, self.pcrs = tcti, pcrs
        self._lock = threading.Lock()
        self._tss = _pytss()
        with self._session() as (esapi, handle, public):
            self.ek_certificate = self._read_ek_certificate(esapi)
            del handle
        self.ak_public = public
        if state is not None:
            _check_enrolled(state, public)
        ak = fmt.parse_ak_public(public)
        der = _evidence.spki_der(ak.key)
        self.platform_id = _evidence.platform_id(der)
        self.public_key_pem = ak.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    @contextlib.contextmanager
    def _session(self) -> Iterator[tuple[Any, Any, bytes]]:
        """``(esapi, AK handle, AK TPMT_PUBLIC)``; flushes the AK and closes the TCTI after."""
        t = self._tss
        with self._lock:
            try:
                esapi = t.ESAPI(self.tcti)
            except Exception as exc:  # TSS2_Exception or a TCTI loader error
                raise errors.EvidenceError(
                    f"cannot open the TPM at {self.tcti}: {exc}",
                    details=["check the --tpm TCTI (device:/dev/tpmrm0, "
                             "swtpm:host=127.0.0.1,port=2321) and that the TPM is up"],
                ) from None
            handle = None
            try:
                attrs = (t.TPMA_OBJECT.RESTRICTED | t.TPMA_OBJECT.SIGN_ENCRYPT
                         | t.TPMA_OBJECT.FIXEDTPM | t.TPMA_OBJECT.FIXEDPARENT
                         | t.TPMA_OBJECT.SENSITIVEDATAORIGIN | t.TPMA_OBJECT.USERWITHAUTH)
                template = t.TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256:null",
                                                objectAttributes=attrs, nameAlg="sha256")
                handle, public, _, _, _ = esapi.create_primary(None, template,
                                                               t.ESYS_TR.ENDORSEMENT)
                yield esapi, handle, bytes(public.publicArea.marshal())
            except t.TSS2_Exception as exc:
                raise errors.EvidenceError(f"the TPM at {self.tcti} refused: {exc}") from None
            finally:
                if handle is not None:
                    with contextlib.suppress(Exception):
                        esapi.flush_context(handle)
                esapi.close()

    def _read_ek_certificate(self, esapi: Any) -> bytes | None:
        t = self._tss
        for index in _EK_CERT_INDICES:
            try:
                nv = esapi.tr_from_tpmpublic(index)
                public, _ = esapi.nv_read_public(nv)
                size = int(public.nvPublic.dataSize)
                data = b""
                while len(data) < size:  # NV reads are limited to a TPM-specific chunk size
                    chunk = bytes(esapi.nv_read(nv, min(512, size - len(data)), len(data),
                                                auth_handle=nv))
                    data += chunk
                return data
            except t.TSS2_Exception:
                continue
        return None

    def read_pcrs(self, esapi: Any, pcrs: tuple[int, ...]) -> dict[str, str]:
        values = {}
        for pcr in pcrs:
            _, _, digests = esapi.pcr_read(self._tss.TPML_PCR_SELECTION.parse(f"sha256:{pcr}"))
            values[str(pcr)] = bytes(digests[0]).hex()
        return values

    def current_pcrs(self) -> dict[str, str]:
        """The current SHA-256 PCR values of the configured selection (for enrolment)."""
        with self._session() as (esapi, _, _):
            return self.read_pcrs(esapi, self.pcrs)

    def quote(self, *, measurement: str, fspf_tag: str | None, report_data_hex: str,
              uid: int, gid: int) -> bytes:
        """``tpm`` evidence over the claims (the LAS's measurement of its caller): a
        TPM2_Quote whose extraData binds them."""
        problems = _evidence.check_claim_values(measurement, fspf_tag, report_data_hex)
        problems += _evidence.check_ids(uid, gid)
        if problems:
            raise errors.EvidenceError("cannot quote malformed claims", details=problems)
        qualifying = fmt.qualifying_data(measurement, fspf_tag, report_data_hex, uid, gid)
        selection = self._tss.TPML_PCR_SELECTION.parse(
            "sha256:" + ",".join(str(p) for p in self.pcrs))
        with self._session() as (esapi, handle, public):
            if public != self.ak_public:
                raise errors.EvidenceError(f"the TPM at {self.tcti} now yields another "
                                           "attestation key: restart the LAS")
            for _ in range(_PCR_RETRIES):
                attest_2b, signature = esapi.quote(handle, selection, qualifying)
                attest = bytes(attest_2b.attestationData)
                parsed = fmt.parse_attest(attest)
                quoted = tuple(p for alg, ps in parsed.selection
                               if alg == fmt.TPM_ALG_SHA256 for p in ps)
                pcrs = {"sha256": self.read_pcrs(esapi, quoted)}
                # a PCR extended between quote and read: quote again
                if fmt.pcr_digest(parsed.selection, pcrs) == parsed.pcr_digest:
                    break
            else:
                raise errors.EvidenceError("PCR values kept changing while quoting; retry")
            sig = bytes(signature.marshal())
        claims = {"type": fmt.TPM, "measurement": measurement, "fspf_tag": fspf_tag,
                  "report_data": report_data_hex, "platform_id": self.platform_id,
                  "uid": uid, "gid": gid}
        return fmt.build_evidence(claims=claims, attest=attest, signature=sig,
                                  ak_public=self.ak_public, pcrs=pcrs,
                                  ek_certificate=self.ek_certificate)


def _check_enrolled(state: Path, public: bytes) -> None:
    """Record the AK's public area on first use; refuse a different AK afterwards."""
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state / AK_FILE
    if not path.exists():
        write_private_file(path, public, keep_existing=True)
    if path.read_bytes() != public:
        raise errors.ConfigError(
            f"the TPM yields another attestation key than the one enrolled in {path}",
            details=["another TPM, or its endorsement seed changed: the platform id pinned in "
                     f"policies no longer matches; move {path} away to enrol this TPM"],
        )


def make_quoter(state: Path, options: Mapping[str, str]) -> TpmQuoter:
    """The quoter for ``cloister las serve --evidence tpm``: options ``tcti`` and ``pcrs``."""
    unknown = set(options) - {"tcti", "pcrs"}
    if unknown or "tcti" not in options:
        raise errors.ConfigError("tpm evidence needs a TCTI (--tpm device:/dev/tpmrm0)",
                                 details=[f"unknown option {o}" for o in sorted(unknown)])
    pcrs = parse_pcrs(options["pcrs"]) if "pcrs" in options else DEFAULT_PCRS
    return TpmQuoter(options["tcti"], state, pcrs)
