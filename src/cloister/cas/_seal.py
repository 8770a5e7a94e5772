"""The seal of the master key, chosen at ``cloister cas init`` and kept in ``STATE/seal.json``.

``seal.json`` holds no secret: the seal's type and parameters, a random
``seal_id`` naming this CAS's seal (for a key file the operator provides, derived
from the key: :func:`file_seal_id`), and a check value (an HMAC of the seal
id under a key derived from the master key) that tells a right master key
from a wrong one.  The master key itself is never written in plaintext:

- ``tpm``: sealed to a TPM 2.0 (optionally to PCR values); unsealed at every
  start (:mod:`cloister.cas._seal_tpm`), with a TPM NV counter against rollback;
- ``shamir``: split into N shares of which K give it back
  (:mod:`cloister.cas._shamir`); the CAS starts sealed until K arrive;
- ``file``: a 32-byte key file the operator keeps outside the state directory
  (development; refused inside it).

A share reads ``cloister-share-1:`` + base64url(seal id ‖ x ‖ y ‖ checksum):
the seal id names the CAS it belongs to, the 4-byte SHA-256 checksum catches
a mistyped share before it is combined.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloister import errors
from cloister._files import write_private_file
from cloister.cas import _shamir
from cloister.cas._keyring import KEY_SIZE, hkdf
from cloister.cas._keys import read_key_file, replace_private_file

SEAL_FILE = "seal.json"
SEAL_TYPES = ("tpm", "shamir", "file")
_SHARE_PREFIX = "cloister-share-1:"
_SEAL_ID_BYTES = 8
_CHECKSUM = 4


def key_check(master_key: bytes, seal_id: str) -> str:
    return hmac.new(hkdf(master_key, b"cloister seal check v1"), seal_id.encode(),
                    hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SealConfig:
    """What ``seal.json`` says (no secret)."""

    type: str
    seal_id: str
    check: str
    #: per type: ``file`` → ``{"path"}``; ``shamir`` → ``{"shares", "threshold"}``;
    #: ``tpm`` → ``{"tcti", "pcrs", "public", "private", "nv_index"}``
    params: dict[str, Any] = field(default_factory=dict)

    def save(self, state: Path) -> None:
        data = {"format": 1, "type": self.type, "seal_id": self.seal_id, "check": self.check,
                **self.params}
        replace_private_file(state / SEAL_FILE, (json.dumps(data, indent=2) + "\n").encode())

    @classmethod
    def load(cls, state: Path) -> SealConfig | None:
        path = state / SEAL_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            kind, seal_id, check = str(data.pop("type")), str(data.pop("seal_id")), \
                str(data.pop("check"))
        except (ValueError, KeyError, AttributeError):
            raise errors.ConfigError(f"the seal configuration {path} is malformed") from None
        if data.pop("format", None) != 1 or kind not in SEAL_TYPES:
            raise errors.ConfigError(
                f"the seal configuration {path} is of an unknown format or type {kind!r}")
        return cls(kind, seal_id, check, data)

    def accepts(self, master_key: bytes) -> bool:
        return hmac.compare_digest(key_check(master_key, self.seal_id), self.check)


def new_seal_id() -> str:
    return os.urandom(_SEAL_ID_BYTES).hex()


def file_seal_id(master_key: bytes) -> str:
    """The seal id of an operator-provided key file: derived from the key, so that every
    state directory initialised with one key — replicas of one PostgreSQL store, each
    initialised on its own (``cas serve --init-file-seal``) — has one seal and opens
    one keyring.  A one-way derivation: it tells nothing of the key."""
    return hkdf(master_key, b"cloister file seal id v1")[:_SEAL_ID_BYTES].hex()


def new_master_key() -> bytes:
    return os.urandom(KEY_SIZE)


# --- file ------------------------------------------------------------------------


def check_outside(state: Path, key_file: Path) -> Path:
    """The absolute key file path; ConfigError when it lies inside the state directory."""
    key_abs = key_file.expanduser().absolute().resolve()
    state_abs = state.expanduser().absolute().resolve()
    if key_abs == state_abs or state_abs in key_abs.parents:
        raise errors.ConfigError(
            f"the key file {key_file} lies inside the CAS state directory {state}",
            details=["a key beside the data it protects protects nothing: put it elsewhere "
                     "(another disk, a secrets mount), or use --seal tpm or shamir"],
        )
    return key_abs


def file_seal(state: Path, key_file: Path, master_key: bytes) -> dict[str, Any]:
    """Write ``master_key`` to a new key file outside ``state`` (0600)."""
    path = check_outside(state, key_file)
    if path.exists() and read_key_file(path) == master_key:
        return {"path": str(path)}  # provided by the operator, or an interrupted migration
    if path.exists():
        raise errors.ConfigError(
            f"key file {path} already exists",
            details=["name a new file: cloister cas init creates the key, never reuses one"],
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(path, master_key)
    return {"path": str(path)}


def file_unseal(state: Path, config: SealConfig, override: Path | None = None) -> bytes:
    path = check_outside(state, override or Path(config.params["path"]))
    key = read_key_file(path)
    if not config.accepts(key):
        raise errors.ConfigError(
            f"the key file {path} does not hold this CAS's master key (seal {config.seal_id})",
            details=["give the key file this state directory was initialised with"],
        )
    return key


# --- shamir ----------------------------------------------------------------------


def encode_share(seal_id: str, x: int, y: bytes) -> str:
    body = bytes.fromhex(seal_id) + bytes([x]) + y
    body += hashlib.sha256(body).digest()[:_CHECKSUM]
    return _SHARE_PREFIX + base64.urlsafe_b64encode(body).decode().rstrip("=")


def decode_share(text: str) -> tuple[str, int, bytes]:
    """``(seal id, x, y)``; BadShare naming what is wrong (never echoing the share)."""
    text = text.strip()
    if not text.startswith(_SHARE_PREFIX):
        raise errors.BadShare("this is not a cloister unseal share (it does not start with "
                              f"{_SHARE_PREFIX!r})")
    raw = text.removeprefix(_SHARE_PREFIX)
    try:
        body = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except ValueError:
        raise errors.BadShare("the unseal share is not valid base64url: mistyped?") from None
    if len(body) != _SEAL_ID_BYTES + 1 + KEY_SIZE + _CHECKSUM or \
            hashlib.sha256(body[:-_CHECKSUM]).digest()[:_CHECKSUM] != body[-_CHECKSUM:]:
        raise errors.BadShare("the unseal share fails its checksum: mistyped or truncated?")
    seal_id = body[:_SEAL_ID_BYTES].hex()
    return seal_id, body[_SEAL_ID_BYTES], body[_SEAL_ID_BYTES + 1 : -_CHECKSUM]


def shamir_shares(seal_id: str, master_key: bytes, shares: int, threshold: int) -> list[str]:
    if not 1 <= threshold <= shares <= _shamir.MAX_SHARES:
        raise errors.ConfigError(
            f"--key-threshold {threshold} and --key-shares {shares} do not fit",
            details=["need 1 <= threshold <= shares <= 255 "
                     "(e.g. --key-shares 5 --key-threshold 3)"],
        )
    return [encode_share(seal_id, x, y) for x, y in _shamir.split(master_key, shares, threshold)]


class ShamirUnsealer:
    """Collects shares until ``threshold`` of them give the master key (thread-safe).

    Fewer shares do nothing; a foreign, mistyped or repeated share is refused
    by name and not counted; K shares that do not combine to this CAS's
    master key discard the whole attempt (as Vault does), since which one is
    wrong cannot be told.
    """

    def __init__(self, config: SealConfig) -> None:
        self.config = config
        self.threshold = int(config.params["threshold"])
        self._parts: dict[int, bytes] = {}
        self._lock = threading.Lock()

    @property
    def progress(self) -> int:
        return len(self._parts)

    def reset(self) -> None:
        with self._lock:
            self._parts.clear()

    def add(self, share: str) -> bytes | None:
        """The master key once complete, else ``None``."""
        seal_id, x, y = decode_share(share)
        if seal_id != self.config.seal_id:
            raise errors.BadShare(
                f"this share belongs to another CAS (seal {seal_id}); this CAS's seal is "
                f"{self.config.seal_id}",
                details=["use the shares printed by `cloister cas init` for this state directory"],
            )
        with self._lock:
            if x in self._parts:
                raise errors.BadShare("this share was already given; give a different one",
                                      details=[f"{self.progress} of {self.threshold} so far"])
            self._parts[x] = y
            if len(self._parts) < self.threshold:
                return None
            key = _shamir.combine(list(self._parts.items()))
            self._parts.clear()
        if not self.config.accepts(key):
            raise errors.BadShare(
                f"these {self.threshold} shares do not combine to this CAS's master key: at "
                "least one of them is wrong (a share of an earlier init or migration?)",
                details=["every share given so far was discarded: start again with "
                         f"{self.threshold} shares of the current seal"],
            )
        return key
