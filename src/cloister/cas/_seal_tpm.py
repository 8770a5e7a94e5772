"""The ``tpm`` seal: the master key sealed to a TPM 2.0, and a TPM NV counter.

- **Sealing**: a keyed-hash object holding the master key is created under a
  primary storage key of the owner hierarchy (ECC P-256, derived from the
  TPM's owner seed and a fixed template, so the same TPM yields the same
  parent on every start and nothing of it is stored).  Only the object's
  TPM2B_PUBLIC and TPM2B_PRIVATE (encrypted by the TPM, usable only by that
  TPM's parent key) go into ``seal.json``.  With PCR binding the object's
  auth policy is TPM2_PolicyPCR over the chosen SHA-256 PCRs' values at init:
  when any of them changes, the TPM refuses to unseal.
- **Counter**: an NV index of type counter (TPM_NT_COUNTER) that only ever
  increases — not even the TPM owner can set it back.  The rollback guard
  (:mod:`cloister.cas._rollback`) increments it after store writes.

Every operation opens the TCTI, does its work, flushes its handles and closes
the TCTI (a raw swtpm socket has no resource manager; ``/dev/tpmrm0`` is shared).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import secrets
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from cloister import errors

_NV_BASE = 0x01500000
_NV_SPAN = 0x10000
_lock = threading.Lock()


def _tss() -> Any:
    os.environ.setdefault("TSS2_LOG", "all+NONE")
    try:
        return importlib.import_module("tpm2_pytss")
    except ImportError as exc:
        raise errors.ConfigError(
            f"the tpm seal needs tpm2-pytss, which cannot be imported: {exc}",
            details=["apt-get install libtss2-dev && pip install tpm2-pytss"],
        ) from None


@contextlib.contextmanager
def _esapi(tcti: str) -> Iterator[tuple[Any, Any]]:
    t = _tss()
    with _lock:
        try:
            esapi = t.ESAPI(tcti)
        except Exception as exc:  # TSS2_Exception or a TCTI loader error
            raise errors.ConfigError(
                f"cannot open the TPM at {tcti}: {exc}",
                details=["check --tpm (device:/dev/tpmrm0, swtpm:host=127.0.0.1,port=2321) "
                         "and that the TPM is up"],
            ) from None
        try:
            yield t, esapi
        finally:
            esapi.close()


def _primary(t: Any, esapi: Any) -> Any:
    attrs = (t.TPMA_OBJECT.RESTRICTED | t.TPMA_OBJECT.DECRYPT | t.TPMA_OBJECT.FIXEDTPM
             | t.TPMA_OBJECT.FIXEDPARENT | t.TPMA_OBJECT.SENSITIVEDATAORIGIN
             | t.TPMA_OBJECT.USERWITHAUTH)
    template = t.TPM2B_PUBLIC.parse("ecc256:aes128cfb", objectAttributes=attrs, nameAlg="sha256")
    handle, _, _, _, _ = esapi.create_primary(None, template, t.ESYS_TR.OWNER)
    return handle


def _selection(t: Any, pcrs: Sequence[int]) -> Any:
    return t.TPML_PCR_SELECTION.parse("sha256:" + ",".join(str(p) for p in pcrs))


def _policy_session(t: Any, esapi: Any, pcrs: Sequence[int], *, trial: bool) -> Any:
    kind = t.TPM2_SE.TRIAL if trial else t.TPM2_SE.POLICY
    session = esapi.start_auth_session(
        t.ESYS_TR.NONE, t.ESYS_TR.NONE, kind,
        t.TPMT_SYM_DEF(algorithm=t.TPM2_ALG.NULL), t.TPM2_ALG.SHA256)
    esapi.policy_pcr(session, t.TPM2B_DIGEST(), _selection(t, pcrs))
    return session


def seal(tcti: str, master_key: bytes, pcrs: Sequence[int]) -> dict[str, Any]:
    """Seal ``master_key`` to the TPM at ``tcti`` (and to ``pcrs``' current values) and
    define the NV counter; the ``seal.json`` parameters."""
    with _esapi(tcti) as (t, esapi):
        handles: list[Any] = []
        try:
            parent = _primary(t, esapi)
            handles.append(parent)
            policy = t.TPM2B_DIGEST()
            attrs = t.TPMA_OBJECT.FIXEDTPM | t.TPMA_OBJECT.FIXEDPARENT
            if pcrs:
                trial = _policy_session(t, esapi, pcrs, trial=True)
                handles.append(trial)
                policy = esapi.policy_get_digest(trial)
            else:
                attrs |= t.TPMA_OBJECT.USERWITHAUTH
            public = t.TPM2B_PUBLIC(t.TPMT_PUBLIC(
                type=t.TPM2_ALG.KEYEDHASH, nameAlg=t.TPM2_ALG.SHA256, objectAttributes=attrs,
                authPolicy=policy,
                parameters=t.TPMU_PUBLIC_PARMS(keyedHashDetail=t.TPMS_KEYEDHASH_PARMS(
                    scheme=t.TPMT_KEYEDHASH_SCHEME(scheme=t.TPM2_ALG.NULL)))))
            sensitive = t.TPM2B_SENSITIVE_CREATE(t.TPMS_SENSITIVE_CREATE(
                data=t.TPM2B_SENSITIVE_DATA(master_key)))
            private, public_out, _, _, _ = esapi.create(parent, sensitive, public)
            nv_index = _define_counter(t, esapi)
        except t.TSS2_Exception as exc:
            raise errors.ConfigError(f"the TPM at {tcti} refused to seal: {exc}") from None
        finally:
            for handle in handles:
                with contextlib.suppress(Exception):
                    esapi.flush_context(handle)
    return {"tcti": tcti, "pcrs": list(pcrs), "public": bytes(public_out.marshal()).hex(),
            "private": bytes(private.marshal()).hex(), "nv_index": nv_index}


def unseal(params: dict[str, Any], tcti: str | None = None) -> bytes:
    """The master key from the TPM; ConfigError naming why the TPM refused."""
    tcti = tcti or str(params["tcti"])
    pcrs = [int(p) for p in params.get("pcrs", [])]
    with _esapi(tcti) as (t, esapi):
        handles: list[Any] = []
        try:
            parent = _primary(t, esapi)
            handles.append(parent)
            public, _ = t.TPM2B_PUBLIC.unmarshal(bytes.fromhex(params["public"]))
            private, _ = t.TPM2B_PRIVATE.unmarshal(bytes.fromhex(params["private"]))
            try:
                obj = esapi.load(parent, private, public)
            except t.TSS2_Exception:
                raise errors.ConfigError(
                    f"the TPM at {tcti} cannot load this CAS's sealed master key: it was "
                    "sealed by another TPM (or this TPM's owner seed was cleared)",
                    details=["start the CAS on the machine whose TPM sealed it, or recover "
                             "from a backup of another seal"],
                ) from None
            handles.append(obj)
            if pcrs:
                session = _policy_session(t, esapi, pcrs, trial=False)
                handles.append(session)
                try:
                    data = esapi.unseal(obj, session1=session)
                except t.TSS2_Exception:
                    raise errors.ConfigError(
                        f"the TPM refuses to unseal the master key: PCR values "
                        f"{','.join(map(str, pcrs))} (sha256) differ from those it was "
                        "sealed to",
                        details=["the boot chain or a measured component changed; boot the "
                                 "measured configuration, or unseal elsewhere and re-init"],
                    ) from None
            else:
                data = esapi.unseal(obj)
        except t.TSS2_Exception as exc:
            raise errors.ConfigError(f"the TPM at {tcti} refused to unseal: {exc}") from None
        finally:
            for handle in handles:
                with contextlib.suppress(Exception):
                    esapi.flush_context(handle)
        return bytes(data)


# --- the NV counter --------------------------------------------------------------


def _define_counter(t: Any, esapi: Any) -> int:
    attrs = (t.TPMA_NV.AUTHREAD | t.TPMA_NV.AUTHWRITE | t.TPMA_NV.NO_DA
             | (t.TPM2_NT.COUNTER << t.TPMA_NV.TPM2_NT_SHIFT))
    for _ in range(16):
        index = _NV_BASE + secrets.randbelow(_NV_SPAN)
        public = t.TPM2B_NV_PUBLIC(t.TPMS_NV_PUBLIC(
            nvIndex=index, nameAlg=t.TPM2_ALG.SHA256, attributes=attrs, dataSize=8))
        try:
            handle = esapi.nv_define_space(t.TPM2B_AUTH(), public, t.ESYS_TR.OWNER)
        except t.TSS2_Exception as exc:
            if "NV_DEFINED" in str(exc) or "0x14c" in str(exc).lower():
                continue
            raise
        esapi.nv_increment(handle, auth_handle=handle)  # a counter is readable once written
        return index
    raise errors.ConfigError("no free NV index for the rollback counter in the TPM")


def _counter_handle(t: Any, esapi: Any, index: int) -> Any:
    try:
        return esapi.tr_from_tpmpublic(index)
    except t.TSS2_Exception:
        raise errors.ConfigError(
            f"the TPM has no NV counter {index:#x}: it is another TPM, or the counter was "
            "undefined") from None


def read_counter(tcti: str, index: int) -> int:
    with _esapi(tcti) as (t, esapi):
        handle = _counter_handle(t, esapi, index)
        try:
            return int.from_bytes(bytes(esapi.nv_read(handle, 8, 0, auth_handle=handle)), "big")
        except t.TSS2_Exception as exc:
            raise errors.ConfigError(f"cannot read the TPM NV counter {index:#x}: {exc}") from None


def increment_counter(tcti: str, index: int, times: int = 1) -> int:
    """Increment ``times`` times; the new value."""
    with _esapi(tcti) as (t, esapi):
        handle = _counter_handle(t, esapi, index)
        try:
            for _ in range(times):
                esapi.nv_increment(handle, auth_handle=handle)
            return int.from_bytes(bytes(esapi.nv_read(handle, 8, 0, auth_handle=handle)), "big")
        except t.TSS2_Exception as exc:
            raise errors.ConfigError(
                f"cannot increment the TPM NV counter {index:#x}: {exc}") from None


def extend_pcr(tcti: str, pcr: int, data: bytes) -> None:
    """Extend a SHA-256 PCR (tests and operators simulating a changed boot)."""
    with _esapi(tcti) as (t, esapi):
        import hashlib  # noqa: PLC0415

        digests = t.TPML_DIGEST_VALUES([t.TPMT_HA(hashAlg=t.TPM2_ALG.SHA256,
                                                  digest=t.TPMU_HA(sha256=hashlib.sha256(data).digest()))])
        esapi.pcr_extend(t.ESYS_TR.PCR0 + pcr, digests)
