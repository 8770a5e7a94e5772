"""TDX collateral: TCB info, QE identity, PCK and root CRLs, and the TCB status they give.

Two layouts are read from a collateral directory (any folder of it):

* Intel PCS responses as files: ``tcb_info.json`` (``{"tcbInfo": …,
  "signature": …}``), ``qe_identity.json``, ``pck_crl.der``,
  ``root_crl.der`` and the issuer chains ``tcb_info_issuer_chain.pem``,
  ``qe_identity_issuer_chain.pem``;
* one ``collateral.json`` as PCCS clients store it (``tcb_info`` text and
  ``tcb_info_signature`` hex, ``qe_identity`` and its signature, ``pck_crl``
  and ``root_ca_crl`` hex, the issuer chains).

The set whose TCB info names the quote's FMSPC is used.  Signatures on TCB
info and QE identity are ECDSA P-256 over the exact bytes of the JSON
object, by Intel's TCB signing certificate, which must chain to the pinned
Intel SGX Root CA.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from cloister.attest._plugin import Collateral

#: TCB status → SCONE tolerations it needs (Revoked is refused outright)
STATUS_TOLERATIONS = {
    "UpToDate": (),
    "SWHardeningNeeded": ("software-hardening-needed",),
    "ConfigurationNeeded": ("insecure-configuration",),
    "ConfigurationAndSWHardeningNeeded": ("insecure-configuration", "software-hardening-needed"),
    "OutOfDate": ("outdated-tcb",),
    "OutOfDateConfigurationNeeded": ("outdated-tcb", "insecure-configuration"),
}
_ORDER = ("UpToDate", "SWHardeningNeeded", "ConfigurationNeeded",
          "ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded",
          "Revoked")


@dataclass(frozen=True)
class SignedJson:
    """A signed JSON object: its exact bytes, parsed value and the signature (r‖s)."""

    body: bytes
    value: dict[str, Any]
    signature: bytes


@dataclass(frozen=True)
class CollateralSet:
    where: str
    tcb_info: SignedJson
    qe_identity: SignedJson
    tcb_chain: bytes
    qe_chain: bytes
    pck_crl: bytes
    root_crl: bytes


def _embedded(text: bytes, key: str) -> SignedJson:
    """``{"<key>": {…}, "signature": "hex"}`` → the object's exact bytes and signature."""
    start = text.index(b"{", text.index(f'"{key}"'.encode()))
    value, end = json.JSONDecoder().raw_decode(text.decode(), start)
    whole = json.loads(text)
    return SignedJson(text[start:end], value, bytes.fromhex(whole["signature"]))


def _from_pcs(folder: str, collateral: Collateral) -> CollateralSet:
    def get(name: str) -> bytes:
        data = collateral.get(f"{folder}{name}")
        if data is None:
            raise KeyError(name)
        return data

    return CollateralSet(
        folder or ".", _embedded(get("tcb_info.json"), "tcbInfo"),
        _embedded(get("qe_identity.json"), "enclaveIdentity"),
        get("tcb_info_issuer_chain.pem"), get("qe_identity_issuer_chain.pem"),
        get("pck_crl.der"), get("root_crl.der"))


def _from_bundle(name: str, data: bytes) -> CollateralSet:
    obj = json.loads(data)

    def signed(key: str) -> SignedJson:
        body = obj[key].encode()
        return SignedJson(body, json.loads(body), bytes.fromhex(obj[f"{key}_signature"]))

    return CollateralSet(
        name, signed("tcb_info"), signed("qe_identity"), obj["tcb_info_issuer_chain"].encode(),
        obj["qe_identity_issuer_chain"].encode(), bytes.fromhex(obj["pck_crl"]),
        bytes.fromhex(obj["root_ca_crl"]))


def collateral_sets(collateral: Collateral) -> tuple[list[CollateralSet], list[str]]:
    """Every readable collateral set, and a problem line for each unreadable one."""
    sets, problems = [], []
    for name in collateral:
        folder = name[: -len("tcb_info.json")] if name.endswith("tcb_info.json") else None
        try:
            if folder is not None and (folder == "" or folder.endswith("/")):
                sets.append(_from_pcs(folder, collateral))
            elif name == "collateral.json" or name.endswith("/collateral.json"):
                sets.append(_from_bundle(name, collateral.get(name) or b""))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            problems.append(f"TDX collateral {name} is unreadable ({type(exc).__name__}: {exc})")
    return sets, problems


def load_crl(data: bytes) -> x509.CertificateRevocationList | None:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError:
        return None


def worse(a: str, b: str) -> str:
    """The worse of two TCB statuses."""
    rank = {s: i for i, s in enumerate(_ORDER)}
    return a if rank.get(a, len(_ORDER)) >= rank.get(b, len(_ORDER)) else b


def module_status(tcb_info: dict[str, Any], td: Any) -> tuple[str, str | None]:
    """The TDX module's TCB status and a problem line (TCB info v3 ``tdxModuleIdentities``).

    A module of major version ``TEE_TCB_SVN[1]`` > 0 must match the identity
    ``TDX_<major>``; its level is the first whose ISV SVN ``TEE_TCB_SVN[0]`` reaches.
    """
    major, minor = td.tee_tcb_svn[1], td.tee_tcb_svn[0]
    identities = tcb_info.get("tdxModuleIdentities")
    if major == 0 or identities is None:
        return "UpToDate", None
    wanted = f"TDX_{major:02X}"
    identity = next((m for m in identities if m.get("id") == wanted), None)
    if identity is None:
        return "UpToDate", f"TCB info names no TDX module identity {wanted}"
    if td.mrsignerseam.hex() != identity["mrsigner"].lower() or not masked_equal(
            td.seam_attributes, identity["attributes"], identity["attributesMask"]):
        return "UpToDate", f"the TDX module does not match Intel's identity {wanted}"
    for level in identity.get("tcbLevels", []):
        if level["tcb"]["isvsvn"] <= minor:
            return str(level["tcbStatus"]), None
    return "OutOfDate", None


def platform_level(tcb_info: dict[str, Any], components: tuple[int, ...], pce_svn: int,
                   tee_tcb_svn: bytes) -> dict[str, Any] | None:
    """The first TCB level (highest first) the platform's SVNs reach, or None."""
    for level in tcb_info.get("tcbLevels", []):
        tcb = level["tcb"]
        sgx = [c["svn"] for c in tcb["sgxtcbcomponents"]]
        tdx = [c["svn"] for c in tcb.get("tdxtcbcomponents", [])]
        if len(sgx) != 16 or any(want > got for want, got in zip(sgx, components, strict=True)):
            continue
        if tcb["pcesvn"] > pce_svn:
            continue
        # with a TDX module of major version > 0 its version is judged by the module
        # identity (module_status): compare from the third component on
        start = 2 if tee_tcb_svn[1] > 0 else 0
        if any(want > got for want, got in
               zip(tdx[start:], tee_tcb_svn[start:], strict=False)):
            continue
        return dict(level)
    return None


def qe_level(identity: dict[str, Any], isvsvn: int) -> dict[str, Any] | None:
    """The first QE identity TCB level whose ISV SVN the QE reaches, or None."""
    for level in identity.get("tcbLevels", []):
        if level["tcb"]["isvsvn"] <= isvsvn:
            return dict(level)
    return None


def masked_equal(value: bytes, want_hex: str, mask_hex: str) -> bool:
    want, mask = bytes.fromhex(want_hex), bytes.fromhex(mask_hex)
    if len(want) != len(mask) or len(value) < len(mask):
        return False
    return all(v & m == w & m for v, w, m in zip(value, want, mask, strict=False))
