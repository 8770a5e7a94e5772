"""Operations on a CAS state directory: init, unseal, migrate, rotate.

A state directory of this release holds ``seal.json`` (no secret), the store
(``cas.db``: only sealed blobs), ``audit.log`` and the public certificates;
with the ``shamir`` seal also the sealed-mode certificate and its key.  A
directory of the first release holds ``master.key`` beside ``cas.db`` and
plaintext private keys: :func:`migrate_state` converts it, and the CAS
refuses to serve it until then.

:func:`migrate_state`, interrupted anywhere (``kill -9``), loses nothing and
a rerun finishes it:

1. a journal (``migrate.journal``) records the new master key wrapped under
   the *old* one — which is still beside it, so this exposes nothing new —
   and the new seal is written (``seal.json``);
2. the store's schema is migrated (one transaction), the keyring created;
3. the plaintext CA and server keys are put into the store, sealed;
4. every session text and secret is rewrapped under the data key, in
   batches (each blob old or new, never torn; both kinds readable);
5. the store is compacted (freed pages with old plaintext are zeroed);
6. every blob is checked; the ``shamir`` shares are handed out;
7. the plaintext key files, ``master.key`` and the journal are removed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cloister import errors
from cloister.cas import _seal
from cloister.cas._identity import (
    LEGACY_CA_KEY,
    LEGACY_SERVER_KEY,
    SERVER_CERT,
    create_identity,
    import_identity,
)
from cloister.cas._keyring import KEYRING_REFRESH_S, Keyring, unwrap, wrap
from cloister.cas._keys import (
    LEGACY_KEY_CHECK_AAD,
    LegacySealer,
    fsync_dir,
    read_key_file,
    replace_private_file,
    shred,
)
from cloister.cas._seal import SealConfig
from cloister.cas._sealed_store import SealedStore, aad_for, secret_aad
from cloister.cas._sqlite import DB_FILE
from cloister.cas._stores import open_store_url
from cloister.cas.store import BlobRef, Store

_log = logging.getLogger(__name__)

LEGACY_MASTER_KEY = "master.key"
JOURNAL = "migrate.journal"


@dataclass(frozen=True)
class SealOptions:
    """How ``cloister cas init`` / ``migrate-state`` seal the master key."""

    seal: str
    key_file: Path | None = None
    shares: int = 5
    threshold: int = 3
    tpm: str | None = None
    pcrs: tuple[int, ...] = ()


def prepare_state(state: Path) -> None:
    """Create the state directory 0700, or refuse one that others can access."""
    try:
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise errors.ConfigError(f"cannot create state directory {state}: {exc.strerror}") from None
    mode = state.stat().st_mode & 0o777
    if mode & 0o077:
        raise errors.ConfigError(
            f"state directory {state} has unsafe permissions {mode:04o}",
            details=[f"run: chmod 700 {state}"],
        )


def open_backend(state: Path, store_url: str = "sqlite") -> Store:
    return open_store_url(store_url, state)


def is_legacy(state: Path) -> bool:
    return (state / LEGACY_MASTER_KEY).exists() or (state / JOURNAL).exists()


def require_current(state: Path) -> SealConfig:
    """The seal of an initialised, current state directory; ConfigError saying what to run."""
    if is_legacy(state):
        raise errors.ConfigError(
            f"the CAS state {state} is from an earlier release (master.key beside the store) "
            "or its migration was interrupted",
            details=[f"run: cloister cas migrate-state --state {state} --seal tpm|shamir|file"],
        )
    config = SealConfig.load(state)
    if config is None:
        raise errors.ConfigError(
            f"the CAS state {state} is not initialised",
            details=[f"run: cloister cas init --state {state} --seal tpm|shamir|file "
                     "(see cloister cas init --help)"],
        )
    return config


def _create_seal(state: Path, opts: SealOptions, master_key: bytes, seal_id: str) -> SealConfig:
    check = _seal.key_check(master_key, seal_id)
    if opts.seal == "file":
        if opts.key_file is None:
            raise errors.ConfigError("--seal file needs --key-file PATH (outside the state "
                                     "directory)")
        return SealConfig("file", seal_id, check, _seal.file_seal(state, opts.key_file, master_key))
    if opts.seal == "shamir":
        _seal.shamir_shares(seal_id, master_key, opts.shares, opts.threshold)  # checks N, K
        return SealConfig("shamir", seal_id, check,
                          {"shares": opts.shares, "threshold": opts.threshold})
    if opts.seal == "tpm":
        if opts.tpm is None:
            raise errors.ConfigError("--seal tpm needs --tpm TCTI (e.g. device:/dev/tpmrm0)")
        from cloister.cas import _seal_tpm  # noqa: PLC0415 — tpm2-pytss only when used

        return SealConfig("tpm", seal_id, check, _seal_tpm.seal(opts.tpm, master_key, opts.pcrs))
    raise errors.ConfigError(f"unknown seal {opts.seal!r}", details=["use tpm, shamir or file"])


def _shares(config: SealConfig, master_key: bytes) -> list[str]:
    if config.type != "shamir":
        return []
    return _seal.shamir_shares(config.seal_id, master_key, int(config.params["shares"]),
                               int(config.params["threshold"]))


def _tpm_counter(config: SealConfig, tcti: str | None = None) -> int:
    from cloister.cas import _seal_tpm  # noqa: PLC0415

    return _seal_tpm.read_counter(tcti or config.params["tcti"], int(config.params["nv_index"]))


def init_state(state: Path, opts: SealOptions, *, store_url: str = "sqlite",
               sans: Sequence[str] = ()) -> list[str]:
    """Initialise a new CAS state; the ``shamir`` shares (empty for other seals)."""
    prepare_state(state)
    if is_legacy(state):
        require_current(state)
    if SealConfig.load(state) is not None or (state / DB_FILE).exists():
        raise errors.ConfigError(f"the CAS state {state} is already initialised",
                                 details=["a CAS is initialised once; to start afresh, use a "
                                          "new --state directory"])
    master_key, seal_id = _seal.new_master_key(), _seal.new_seal_id()
    if opts.seal == "file" and opts.key_file is not None and opts.key_file.exists():
        # an operator-provided key (e.g. a mounted secret) becomes the master key, and
        # names the seal: replicas initialised with it on their own share one seal
        master_key = read_key_file(_seal.check_outside(state, opts.key_file))
        seal_id = _seal.file_seal_id(master_key)
    config = _create_seal(state, opts, master_key, seal_id)
    backend = open_backend(state, store_url)
    try:
        store = SealedStore(backend, Keyring(master_key, backend, seal_id=config.seal_id))
        if config.type == "tpm":
            store.set_head(_tpm_counter(config))
        create_identity(store, state, sans, sealed_mode=config.type == "shamir")
    finally:
        backend.close()
    config.save(state)
    return _shares(config, master_key)


def unseal_automatic(state: Path, config: SealConfig, *, key_file: Path | None = None,
                     tpm: str | None = None) -> bytes:
    """The master key of a ``file`` or ``tpm`` seal (``shamir`` needs its shares)."""
    if config.type == "file":
        return _seal.file_unseal(state, config, key_file)
    if config.type == "tpm":
        from cloister.cas import _seal_tpm  # noqa: PLC0415

        key = _seal_tpm.unseal(config.params, tpm)
        if not config.accepts(key):
            raise errors.ConfigError("the TPM unsealed a key that is not this CAS's master key")
        return key
    raise errors.Sealed(
        f"the CAS state {state} is sealed with Shamir shares",
        details=["give the shares (cloister cas unseal, or --share-file for offline commands)"],
    )


def unseal_shares(config: SealConfig, shares: Sequence[str]) -> bytes:
    unsealer = _seal.ShamirUnsealer(config)
    for share in shares:
        key = unsealer.add(share)
        if key is not None:
            return key
    raise errors.BadShare(f"{len(shares)} share(s) given, {unsealer.threshold} needed")


def open_sealed_store(state: Path, config: SealConfig, master_key: bytes,
                      store_url: str = "sqlite") -> SealedStore:
    backend = open_backend(state, store_url)
    try:
        return SealedStore(backend, Keyring(master_key, backend, seal_id=config.seal_id))
    except BaseException:
        backend.close()
        raise


# --- migration from the first release -------------------------------------------------


def _legacy_rewrapper(keyring: Keyring, legacy: LegacySealer):  # type: ignore[no-untyped-def]
    def fn(ref: BlobRef, blob: bytes) -> bytes | None:
        if Keyring.term_of(blob) is not None:
            return None  # already rewrapped (a rerun)
        if ref.kind == "text":
            plaintext = blob
        elif ref.kind == "secret":
            plaintext = legacy.open(blob, secret_aad(*ref.parts))
        else:
            return None
        return keyring.seal(plaintext, aad_for(ref))
    return fn


def _journal(state: Path, legacy_key: bytes, opts: SealOptions) -> tuple[SealConfig, bytes]:
    """Step 1: the new master key (journaled under the old one) and its seal, created once
    and recovered on a rerun."""
    path, aad = state / JOURNAL, b"cloister-migrate-journal-v1"
    if path.exists():
        data = json.loads(path.read_text())
        master_key, seal_id = unwrap(legacy_key, bytes.fromhex(data["master_key"]), aad), \
            str(data["seal_id"])
    else:
        master_key, seal_id = _seal.new_master_key(), _seal.new_seal_id()
        blob = wrap(legacy_key, master_key, aad).hex()
        replace_private_file(path, json.dumps({"master_key": blob, "seal_id": seal_id}).encode())
    config = SealConfig.load(state)
    if config is None or config.seal_id != seal_id:
        config = _create_seal(state, opts, master_key, seal_id)
        config.save(state)
    return config, master_key


def migrate_state(state: Path, opts: SealOptions, *, store_url: str = "sqlite",
                  old_key_file: Path | None = None) -> list[str] | None:
    """Convert a first-release state directory (steps in the module docstring); the
    ``shamir`` shares, or ``None`` when it was already converted (a rerun)."""
    legacy_path = old_key_file or state / LEGACY_MASTER_KEY
    if not is_legacy(state) and old_key_file is None:
        if SealConfig.load(state) is not None:
            return None
        raise errors.ConfigError(f"no {LEGACY_MASTER_KEY} in {state}: not a CAS state of the "
                                 "first release", details=["give --old-master-key-file"])
    legacy_key = read_key_file(legacy_path) if legacy_path.exists() else None
    if legacy_key is None:
        # the rerun of a run killed after removing master.key: only cleanup is left
        if SealConfig.load(state) is None:
            raise errors.ConfigError(f"{legacy_path} is missing: the store cannot be opened")
        (state / JOURNAL).unlink(missing_ok=True)
        return None
    config, master_key = _journal(state, legacy_key, opts)                      # 1
    backend = open_backend(state, store_url)                                    # 2
    try:
        check = backend.get_meta("key_check")
        legacy = LegacySealer(legacy_key)
        if check is not None:
            try:
                legacy.open(check, LEGACY_KEY_CHECK_AAD)
            except errors.StoreError:
                raise errors.ConfigError(f"{legacy_path} does not open the CAS store") from None
        keyring = Keyring(master_key, backend, seal_id=config.seal_id)
        store = SealedStore(backend, keyring)
        if config.type == "tpm" and backend.get_meta("head") is None:
            store.set_head(_tpm_counter(config))
        ca_key, srv_key = state / LEGACY_CA_KEY, state / LEGACY_SERVER_KEY      # 3
        if ca_key.exists():
            srv_chain = state / SERVER_CERT
            import_identity(
                store, ca_key.read_bytes(), (state / "cas-ca.pem").read_bytes(),
                srv_key.read_bytes() if srv_key.exists() else None,
                srv_chain.read_bytes() if srv_key.exists() and srv_chain.exists() else None)
        create_identity(store, state, sealed_mode=config.type == "shamir")
        moved = backend.rewrap(_legacy_rewrapper(keyring, legacy))             # 4
        _log.info("migrate-state: %d blobs sealed under the data key", moved)
        if check is not None:
            backend.put_meta("key_check", None, expected=check)
        backend.compact()                                                       # 5
        problems = store.check_integrity()                                      # 6
        if problems:
            raise errors.StoreError("the migrated store fails its check; nothing was removed",
                                    details=problems)
    finally:
        backend.close()
    shares = _shares(config, master_key)
    for path in (ca_key, srv_key, legacy_path):                                 # 7
        shred(path)
    (state / JOURNAL).unlink(missing_ok=True)
    fsync_dir(state)
    return shares


def ensure_file_seal(state: Path, key_file: Path, *, store_url: str = "sqlite") -> str:
    """Initialise (or migrate, from the first release) ``state`` with the ``file`` seal,
    its key in ``key_file`` — for the demo and containers whose operator chose a file
    seal (``cas serve --init-file-seal``).  What was done: "initialised", "migrated", ""."""
    opts = SealOptions("file", key_file=key_file)
    if is_legacy(state):
        migrate_state(state, opts, store_url=store_url)
        return "migrated"
    if SealConfig.load(state) is None:
        init_state(state, opts, store_url=store_url)
        return "initialised"
    return ""


# --- rotation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rotation:
    term: int
    rewrapped: int
    remaining: int


def rotate_key(store: SealedStore, *, settle_s: float = 2 * KEYRING_REFRESH_S) -> Rotation:
    """A new data key becomes active; every blob under an older term is rewrapped under it.

    Readers never stop: old terms stay in the keyring, a running CAS picks up
    the new term within :data:`KEYRING_REFRESH_S` (and at once for a blob it
    cannot open), and each blob is replaced whole.  Killed half-way, a rerun
    rotates again and rewraps everything still under an older term.
    """
    keyring = store.keyring
    term = keyring.add_term()
    time.sleep(settle_s)  # running CASes switch their writes to the new term

    def fn(ref: BlobRef, blob: bytes) -> bytes | None:
        old = Keyring.term_of(blob)
        if old is None or old == term:
            return None
        aad = aad_for(ref)
        return keyring.seal(keyring.open(blob, aad), aad)

    rewrapped = store.backend.rewrap(fn)
    left: list[int] = []

    def count(_ref: BlobRef, blob: bytes) -> bytes | None:
        if Keyring.term_of(blob) != term:
            left.append(1)
        return None

    store.backend.rewrap(count)
    return Rotation(term, rewrapped, len(left))
