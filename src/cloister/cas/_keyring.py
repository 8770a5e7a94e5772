"""Envelope keys: the master key wraps a keyring of data keys; data keys seal blobs.

- The **master key** (32 bytes) exists only in memory of an unsealed CAS and
  behind its seal (:mod:`cloister.cas._seal`).  Keys for other purposes are
  derived from it with HKDF-SHA256 (:meth:`Keyring.derive_key`), so no
  request ever pays for a KDF: derivation happens once, at unseal.
- The **keyring** is a list of data keys by *term*; it is stored in the
  store's meta ``keyring``, AES-256-GCM-wrapped under a key derived from the
  master key.  New blobs are sealed under the active (newest) term; older
  terms stay for reading.  :func:`cloister.cas._state.rotate_key` adds a term
  and rewraps every blob under it.
- A **sealed blob** is ``0x02 ‖ term (4 bytes, big-endian) ‖ 12-byte random
  nonce ‖ ciphertext+tag``; its AAD says which row it belongs to, so a blob
  copied to another row fails to open.
- The **head** is the store's write counter with an HMAC under a derived
  key; a writer of the store without the master key cannot forge a higher
  (or any) counter.
- Failures never carry key or plaintext bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import struct
import threading
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cloister import errors
from cloister.cas.store import Store

KEY_SIZE = 32
BLOB_V2 = 0x02
_NONCE = 12
_HEADER = struct.Struct(">BI")
_KEYRING = "keyring"
HEAD = "head"
#: seconds between checks of the stored keyring for a newer term (after a rotation)
KEYRING_REFRESH_S = 1.0


def hkdf(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info).derive(key)


def wrap(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return b"\x01" + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unwrap(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Open a :func:`wrap` blob; :class:`InvalidTag` on a wrong key or tampering."""
    if len(blob) < 1 + _NONCE + 16 or blob[:1] != b"\x01":
        raise InvalidTag
    return AESGCM(key).decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], aad)


@dataclass(frozen=True)
class Head:
    counter: int
    mac: str

    def encode(self) -> bytes:
        return json.dumps({"counter": self.counter, "mac": self.mac}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Head:
        try:
            data = json.loads(raw)
            return cls(int(data["counter"]), str(data["mac"]))
        except (ValueError, KeyError, TypeError):
            raise errors.StoreError("the store's head record is malformed") from None


class Keyring:
    """An unsealed master key and the data keys it wraps.  Never prints a key.

    ``derive_key(purpose)`` gives other parts of the CAS (e.g. the nonce HMAC)
    a stable 32-byte key of their own without touching the master key.
    """

    def __init__(self, master_key: bytes, store: Store, *, seal_id: str) -> None:
        if len(master_key) != KEY_SIZE:
            raise errors.ConfigError(f"master key must be {KEY_SIZE} bytes, got {len(master_key)}")
        self._wrap_key = hkdf(master_key, b"cloister keyring wrap v1")
        self._head_key = hkdf(master_key, b"cloister store head v1")
        self._derive_root = hkdf(master_key, b"cloister derive v1")
        self._aad = b"cloister-keyring\0" + seal_id.encode()
        self._store = store
        self._lock = threading.Lock()
        self._keys: dict[int, AESGCM] = {}
        self._active = 0
        self._raw: bytes | None = None
        self._checked = 0.0
        #: (encoded head, counter) of the last head made or authenticated here
        self._known_head: tuple[bytes, int] | None = None
        self._load(create=True)

    def __repr__(self) -> str:
        return f"Keyring(<keys hidden>, active term {self._active})"

    # --- the keyring in the store --------------------------------------------

    def _decode(self, raw: bytes) -> tuple[int, dict[int, bytes]]:
        try:
            data = json.loads(unwrap(self._wrap_key, raw, self._aad))
        except InvalidTag:
            raise errors.ConfigError(
                "the master key does not open this CAS store's keyring",
                details=["the store belongs to another seal: start the CAS with the state "
                         "directory (and seal) it was created with"],
            ) from None
        return int(data["active"]), {int(t): bytes.fromhex(k) for t, k in data["keys"].items()}

    def _encode(self, active: int, keys: dict[int, bytes]) -> bytes:
        text = json.dumps({"active": active, "keys": {str(t): k.hex() for t, k in keys.items()}})
        return wrap(self._wrap_key, text.encode(), self._aad)

    def _load(self, *, create: bool = False) -> None:
        raw = self._store.get_meta(_KEYRING)
        if raw is None and create:
            first = self._encode(1, {1: os.urandom(KEY_SIZE)})
            with contextlib.suppress(errors.Conflict):  # another process was first: use theirs
                self._store.put_meta(_KEYRING, first, expected=None)
            raw = self._store.get_meta(_KEYRING)
        if raw is None:
            raise errors.StoreError("the CAS store has no keyring")
        with self._lock:
            if raw != self._raw:
                active, keys = self._decode(raw)
                self._keys = {t: AESGCM(k) for t, k in keys.items()}
                self._active, self._raw = active, raw
            self._checked = time.monotonic()

    def refresh(self) -> None:
        """Pick up a term added by a rotation in another process (at most once a second)."""
        if time.monotonic() - self._checked >= KEYRING_REFRESH_S:
            self._load()

    @property
    def active_term(self) -> int:
        return self._active

    @property
    def terms(self) -> tuple[int, ...]:
        return tuple(sorted(self._keys))

    def add_term(self) -> int:
        """A new data key becomes the active term (compare-and-set on the stored keyring)."""
        while True:
            raw = self._store.get_meta(_KEYRING)
            assert raw is not None
            _, keys = self._decode(raw)
            term = max(keys) + 1
            keys[term] = os.urandom(KEY_SIZE)
            try:
                self._store.put_meta(_KEYRING, self._encode(term, keys), expected=raw)
            except errors.Conflict:
                continue
            self._load()
            return term

    # --- blobs ---------------------------------------------------------------

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        term = self._active
        nonce = os.urandom(_NONCE)
        return _HEADER.pack(BLOB_V2, term) + nonce + self._keys[term].encrypt(nonce, plaintext, aad)

    @staticmethod
    def term_of(blob: bytes) -> int | None:
        """The term a sealed blob was made under (``None``: not a sealed blob)."""
        if len(blob) < _HEADER.size + _NONCE + 16 or blob[0] != BLOB_V2:
            return None
        return int(_HEADER.unpack_from(blob)[1])

    def open(self, blob: bytes, aad: bytes) -> bytes:
        term = self.term_of(blob)
        if term is None:
            raise errors.StoreError("a stored blob is not sealed (or is malformed)")
        if term not in self._keys:
            self._load()  # a rotation elsewhere added it
        aead = self._keys.get(term)
        if aead is None:
            raise errors.StoreError(f"a stored blob is sealed under unknown key term {term}")
        body = blob[_HEADER.size :]
        try:
            return aead.decrypt(body[:_NONCE], body[_NONCE:], aad)
        except InvalidTag:
            raise errors.StoreError(
                "a stored blob failed authentication (tampered store, or moved to another row)"
            ) from None

    # --- derived keys and the head -------------------------------------------

    def derive_key(self, purpose: bytes) -> bytes:
        """A 32-byte key for ``purpose`` (e.g. ``b"attest-nonce"``), stable while the master
        key is; distinct purposes give independent keys."""
        if not purpose:
            raise ValueError("a derived key needs a purpose")
        return hmac.new(self._derive_root, purpose, hashlib.sha256).digest()

    def head(self, counter: int) -> Head:
        mac = hmac.new(self._head_key, b"cloister-head\0%d" % counter, hashlib.sha256)
        return Head(counter, mac.hexdigest())

    def verify_head(self, raw: bytes | None) -> int:
        """The counter of a stored head (0 when none); StoreError if its MAC is wrong."""
        if raw is None:
            return 0
        known = self._known_head  # the last head this keyring made or checked: no MAC again
        if known is not None and known[0] == raw:
            return known[1]
        head = Head.decode(raw)
        if not hmac.compare_digest(self.head(head.counter).mac, head.mac):
            raise errors.StoreError(
                f"the store's head (counter {head.counter}) fails authentication under the "
                "master key: the store was tampered with or belongs to another CAS"
            )
        self._known_head = (raw, head.counter)
        return head.counter

    def next_head(self, raw: bytes | None) -> bytes:
        """The head after one more write (for :data:`cloister.cas.store.HeadUpdate`)."""
        counter = self.verify_head(raw) + 1
        encoded = self.head(counter).encode()
        self._known_head = (encoded, counter)
        return encoded
