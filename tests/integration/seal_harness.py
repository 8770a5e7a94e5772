"""Helpers for the seal tests: planted secrets, the offline attacker's search, unseal."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from cas_harness import CLOISTER, Identity
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloister import errors
from cloister.cas._keyring import Keyring
from cloister.cas._sealed_store import aad_for
from cloister.cas._sqlite import SqliteStore
from cloister.cas.store import BlobRef
from cloister.secrets import SecretValue

EXPLICIT_ASCII = "PlantedAsciiValue-7Hq2x9Lr"
EXPLICIT_BINARY = "c0ffee00deadbeef112233445566778899aabbccddeeff00a1b2c3d4e5f60718"
FSPF_KEY = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed1f2a"
LEGACY = Path(__file__).resolve().parents[1] / "data" / "cas_state_v1"


def planted_session(name: str) -> str:
    """The session of the first release's fixture, renamed: explicit ascii and binary
    values, an fspf_key, generated keys and a CA."""
    return (LEGACY / "legacy-app.yml").read_text().replace("legacy-app", name)


def copy_legacy(dest: Path) -> Path:
    """The first release's state directory, with the modes it had on disk."""
    shutil.copytree(LEGACY, dest, ignore=shutil.ignore_patterns("*.yml", "*.md", "owner*"))
    dest.chmod(0o700)
    for path in dest.iterdir():
        path.chmod(0o600)
    return dest


def legacy_owner() -> Identity:
    """The identity that created the fixture's sessions."""
    return Identity(LEGACY / "owner.pem", LEGACY / "owner-key.pem")


def forms(secret: bytes) -> list[bytes]:
    """A secret as text, base64 and hex (upper and lower), and lines of a PEM body."""
    out = [secret, base64.b64encode(secret), secret.hex().encode(), secret.hex().upper().encode()]
    if secret.startswith(b"-----BEGIN"):
        body = [ln for ln in secret.splitlines() if ln and not ln.startswith(b"-----")]
        out += [ln for ln in body if len(ln) >= 16]
        der = base64.b64decode(b"".join(body))
        out += [der, der.hex().encode(), base64.b64encode(der)]
    return out


def needles_of(values: Iterable[SecretValue], ca_key_pem: bytes) -> list[bytes]:
    """Every plaintext form of the secret parts of ``values`` and of the CAS CA key."""
    out = forms(EXPLICIT_ASCII.encode()) + forms(bytes.fromhex(EXPLICIT_BINARY))
    out += forms(FSPF_KEY.encode()) + forms(bytes.fromhex(FSPF_KEY))
    out += forms(ca_key_pem)
    key = serialization.load_pem_private_key(ca_key_pem, password=None)
    raw = key.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
    out += forms(raw)
    for value in values:
        if value.text is not None:
            out += forms(value.text.encode())
        if value.data is not None:
            out += forms(value.data)
        if value.key_pem is not None:
            out += forms(value.key_pem.encode())
    return out


def key_candidates(root: Path) -> list[bytes]:
    """Every key-shaped thing in a copied directory: 32-byte files, 64-hex runs, base64 of
    32 bytes, raw P-256 scalars of PEM private keys."""
    found: list[bytes] = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if len(data) == 32:
            found.append(data)
        found += [bytes.fromhex(m.decode()) for m in re.findall(rb"[0-9a-fA-F]{64}", data)]
        for m in re.findall(rb"[A-Za-z0-9+/_-]{43}=?", data):
            try:
                raw = base64.urlsafe_b64decode(m.replace(b"+", b"-").replace(b"/", b"_") + b"=")
            except ValueError:
                continue
            if len(raw) == 32:
                found.append(raw)
        for pem in re.findall(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----.+?-----END [A-Z ]*PRIVATE "
                              rb"KEY-----", data, re.S):
            key = serialization.load_pem_private_key(pem, password=None)
            found.append(key.private_numbers().private_value.to_bytes(32, "big"))  # type: ignore[union-attr]
    return found


def opens_anything(candidate: bytes, db: Path, seal_id: str) -> list[str]:
    """What ``candidate`` opens in the store ``db``, tried the ways an attacker who knows this
    code would: as the master key (the keyring), as a data key and as a first-release key
    against every blob with its real AAD (all AAD inputs are public columns)."""
    backend = SqliteStore(db)
    opened: list[str] = []
    try:
        try:
            Keyring(candidate, backend, seal_id=seal_id)
            opened.append("the keyring")
        except errors.ConfigError:
            pass
        aead = AESGCM(candidate)

        def visit(ref: BlobRef, blob: bytes) -> bytes | None:
            body = blob[5:] if Keyring.term_of(blob) is not None else blob[1:]
            try:
                aead.decrypt(body[:12], body[12:], aad_for(ref))
                opened.append(f"{ref.kind} {ref.parts[:3]}")
            except (InvalidTag, ValueError):
                pass
            return None

        backend.rewrap(visit)
    finally:
        backend.close()
    return opened


def unseal(cas_addr: str, cas_cert: Path, shares: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLOISTER, "cas", "unseal", "--cas", cas_addr, "--cas-cert", str(cas_cert)],
        input="\n".join(shares) + "\n", capture_output=True, text=True, timeout=60)


def shares_of(init_output: str) -> list[str]:
    return re.findall(r"^Unseal share \d+: (\S+)$", init_output, re.M)
