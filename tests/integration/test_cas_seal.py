"""The CAS's state gives nothing away: the offline attack on a copied state directory, the
shamir seal (sealed CAS, unseal, cloister run waiting), migration and rotation under kill -9."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

from cas_harness import CAS, CLOISTER, init_state, key_file_of, make_identity
from run_harness import LAS, python_measurement
from seal_harness import (
    EXPLICIT_ASCII,
    copy_legacy,
    key_candidates,
    legacy_owner,
    needles_of,
    opens_anything,
    planted_session,
    shares_of,
    unseal,
)

from cloister.cas import ServerConfig, open_store
from cloister.cas._identity import _CA_KEY
from cloister.cas._seal import SealConfig
from cloister.secrets import SecretValue

SHAMIR = ("--seal", "shamir", "--key-shares", "5", "--key-threshold", "3")


def _values(state: Path, names: list[str] | None, shares: list[str] | None = None,
            key_file: Path | None = None) -> tuple[list[SecretValue], bytes, dict[str, str]]:
    """(every secret value, the CA key, every text) read with the key, after the fact."""
    store = open_store(ServerConfig(state=state, master_key_file=key_file), shares or ())
    try:
        values, texts = [], {}
        for name in store.names() if names is None else names:
            for record in store.history(name):
                texts[f"{name}@{record.hash}"] = record.text
                values += [SecretValue.from_bytes(v)
                           for v in store.secrets(name, record.hash).values()]
        ca_key = store.get_sealed(_CA_KEY)
        assert ca_key is not None
        return values, ca_key, texts
    finally:
        store.close()


def _attack(copy: Path, needles: list[bytes]) -> None:
    """The offline attacker: search every file for every needle, try every key-shaped
    thing against the store."""
    files = [p for p in copy.rglob("*") if p.is_file()]
    assert any(p.name == "cas.db" for p in files)
    for path in files:
        content = path.read_bytes()
        for needle in needles:
            assert needle not in content, f"a planted secret lies in plaintext in {path.name}"
    seal = SealConfig.load(copy)
    assert seal is not None
    candidates = key_candidates(copy)
    assert len(candidates) >= 3  # at least the sealed-mode key, the seal id's hex, cert bits
    for candidate in candidates:
        assert opens_anything(candidate, copy / "cas.db", seal.seal_id) == []


def test_offline_attack_on_a_copied_state_finds_nothing(tmp_path: Path) -> None:
    owner = make_identity(tmp_path / "ids", "owner")
    cas = CAS(tmp_path / "state", tmp_path / "cas.log")
    cas.start()
    try:
        for n in range(2):
            assert cas.curl("/session", identity=owner,
                            data=planted_session(f"planted-{n}").encode()).status == 201
        read = cas.curl("/v1/sessions/planted-0", identity=owner)
        assert EXPLICIT_ASCII in read.json()["session"]  # authorized readers still get it
    finally:
        cas.stop()
    values, ca_key, texts = _values(cas.state, ["planted-0", "planted-1"],
                                    key_file=key_file_of(cas.state))
    assert len(values) >= 10 and all(EXPLICIT_ASCII in t for t in texts.values())
    copy = tmp_path / "stolen"
    shutil.copytree(cas.state, copy)  # what a backup or a copied disk holds
    _attack(copy, needles_of(values, ca_key))


def test_shamir_sealed_cas_unseals_with_k_shares(tmp_path: Path) -> None:
    owner = make_identity(tmp_path / "ids", "owner")
    state = tmp_path / "state"
    shares = shares_of(init_state(state, *SHAMIR))
    other = shares_of(init_state(tmp_path / "other", *SHAMIR))
    assert len(shares) == 5 and len(set(shares)) == 5
    cas = CAS(state, tmp_path / "cas.log", wait_ready=False)
    cas.start()
    addr, pin = f"localhost:{cas.port}", state / "cas-ca.pem"
    try:
        sealed_chain = _presented_chain(cas.port)
        assert "BEGIN CERTIFICATE" in sealed_chain
        health = cas.curl("/healthz")
        assert health.status == 503 and health.json()["status"] == "sealed"
        assert health.json()["threshold"] == 3 and health.json()["progress"] == 0
        for path, data in (("/session", planted_session("x").encode()), ("/v1/sessions", b"a"),
                           ("/v1/sessions/x", None), ("/v1/values/session=x", None),
                           ("/v1/values/session=x,secret=y", None), ("/metrics", None),
                           ("/v1/certificate", None), ("/v1/attest/nonce", b"{}"),
                           ("/v1/attest/config", b"{}"), ("/no/such/thing", None)):
            reply = cas.curl(path, identity=owner, data=data)
            assert reply.status == 503, (path, reply.body)
            assert reply.json()["error"]["code"] == "sealed", path
        # a share of another CAS is named as such and not counted
        done = unseal(addr, pin, [other[0]])
        assert done.returncode != 0 and "belongs to another CAS" in done.stderr
        # K-1 shares: still sealed
        done = unseal(addr, pin, shares[3:5])
        assert done.returncode == 0 and "still sealed: 2 of 3" in done.stdout
        assert cas.curl("/v1/sessions/x", identity=owner).status == 503
        done = unseal(addr, pin, shares[:1])
        assert done.returncode == 0 and "is unsealed" in done.stdout, done.stderr
        assert cas.curl("/healthz").status == 200
        assert cas.curl("/session", identity=owner,
                        data=planted_session("after").encode()).status == 201
        served = _presented_chain(cas.port)
        assert "BEGIN CERTIFICATE" in served and served != sealed_chain
    finally:
        cas.stop()
    # the TLS identity is the same after a restart and unseal: clients keep their pin
    cas = CAS(state, tmp_path / "cas2.log", wait_ready=False)
    cas.start()
    try:
        assert unseal(f"localhost:{cas.port}", pin, shares[1:4]).returncode == 0
        assert _presented_chain(cas.port) == served
        assert cas.curl("/v1/sessions/after", identity=owner).status == 200
    finally:
        cas.stop()


def _presented_chain(port: int) -> str:
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-showcerts"],
                         input="", capture_output=True, text=True, timeout=30).stdout
    return "".join(re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n", out,
                              re.S))


RUN_PROGRAM = "print('ran after unseal')\n"


def test_cloister_run_waits_for_a_sealed_cas(tmp_path: Path) -> None:
    state = tmp_path / "cas"
    shares = shares_of(init_state(state, "--seal", "shamir", "--key-shares", "2",
                                  "--key-threshold", "2"))
    owner = make_identity(tmp_path / "ids", "owner")
    program = tmp_path / "app.py"
    program.write_text(RUN_PROGRAM)
    cas = CAS(state, tmp_path / "cas.log", wait_ready=False)
    las = LAS(tmp_path / "las", tmp_path / "las.log")
    cas.start()
    las.start()
    try:
        addr, pin = f"127.0.0.1:{cas.port}", state / "cas-ca.pem"
        assert unseal(addr, pin, shares).returncode == 0
        session = (f"name: waits\nversion: \"0.3\"\nservices:\n  - name: app\n    mrenclaves: "
                   f"[{python_measurement()}]\n    command: python3 {program}\nsecurity:\n"
                   "  attestation:\n    tolerate: [debug-mode]\n")
        assert cas.curl("/session", identity=owner, data=session.encode()).status == 201
        enrol = json.dumps({"platform_id": las.platform_id()}).encode()  # the owner's LAS
        assert cas.curl("/v1/platforms", identity=owner, data=enrol).status == 201
        cas.stop()
        cas.start()  # sealed again
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOISTER_", "SCONE_"))}
        env.update(CLOISTER_CAS_ADDR=addr, CLOISTER_LAS_ADDR=las.addr,
                   CLOISTER_CAS_CERT=str(pin), CLOISTER_CONFIG_ID="waits/app",
                   CLOISTER_RETRY_SECONDS="60")
        addr = f"127.0.0.1:{cas.port}"
        env["CLOISTER_CAS_ADDR"] = addr
        run = subprocess.Popen([CLOISTER, "run"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(2)
            assert run.poll() is None, run.communicate()
            assert unseal(addr, pin, shares).returncode == 0
            out, err = run.communicate(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
        assert run.returncode == 0, err
        assert "ran after unseal" in out
        assert "sealed" in err and "retrying" in err
    finally:
        las.stop()
        cas.stop()


def test_file_seal_key_inside_the_state_is_refused(tmp_path: Path) -> None:
    done = subprocess.run([CLOISTER, "cas", "init", "--state", str(tmp_path / "s"), "--seal",
                           "file", "--key-file", str(tmp_path / "s" / "sub" / "k")],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "lies inside the CAS state directory" in done.stderr
    assert not (tmp_path / "s" / "seal.json").exists()
    served = subprocess.run([CLOISTER, "cas", "serve", "--state", str(tmp_path / "s")],
                            capture_output=True, text=True, timeout=30)
    assert served.returncode == 2 and "is not initialised" in served.stderr


# --- migration ---------------------------------------------------------------------------


def _legacy_needles(state: Path) -> list[bytes]:
    """The secrets of the first release's fixture, read with its own key."""
    from seal_harness import forms  # noqa: PLC0415

    from cloister.cas._keys import LegacySealer  # noqa: PLC0415
    from cloister.cas._sealed_store import secret_aad  # noqa: PLC0415

    sealer = LegacySealer((state / "master.key").read_bytes())
    db = sqlite3.connect(state / "cas.db")
    rows = db.execute("SELECT s.session, s.hash, s.secret, s.blob, v.creator_key_hash FROM "
                      "secrets s JOIN session_versions v ON v.name=s.session AND "
                      "v.hash=s.hash").fetchall()
    db.close()
    values = [SecretValue.from_bytes(sealer.open(bytes(b), secret_aad(n, h, s, c)))
              for n, h, s, b, c in rows]
    return needles_of(values, (state / "cas-ca-key.pem").read_bytes()) + \
        forms((state / "master.key").read_bytes())


def _check_migrated(state: Path, key_file: Path, texts_before: dict[str, str]) -> None:
    _, _, texts = _values(state, None, key_file=key_file)
    assert texts == texts_before
    assert not (state / "master.key").exists() and not (state / "cas-ca-key.pem").exists()
    assert not (state / "cas-server-key.pem").exists()
    assert not (state / "migrate.journal").exists()


def _legacy_texts(state: Path) -> dict[str, str]:
    db = sqlite3.connect(state / "cas.db")
    rows = db.execute("SELECT name, hash, text FROM session_versions").fetchall()
    db.close()
    return {f"{n}@{h}": t for n, h, t in rows}


def test_migrating_a_first_release_state(tmp_path: Path) -> None:
    state = copy_legacy(tmp_path / "state")
    texts = _legacy_texts(state)
    needles = _legacy_needles(state)
    ca_before = (state / "cas-ca.pem").read_bytes()
    refused = subprocess.run([CLOISTER, "cas", "serve", "--state", str(state)],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "cloister cas migrate-state" in refused.stderr
    key_file = tmp_path / "new-master.key"
    done = subprocess.run([CLOISTER, "cas", "migrate-state", "--state", str(state), "--seal",
                           "file", "--key-file", str(key_file)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _check_migrated(state, key_file, texts)
    cas = CAS(state, tmp_path / "cas.log", ("--master-key-file", str(key_file)))
    cas.start()
    try:
        owner = legacy_owner()
        read = cas.curl("/v1/sessions/legacy-app", identity=owner)  # the same CA pin works
        assert read.status == 200 and EXPLICIT_ASCII in read.json()["session"]
        values = cas.curl("/v1/values/session=legacy-app")
        assert values.json()["values"]["app_ca"]["value"].startswith("-----BEGIN CERT")
    finally:
        cas.stop()
    assert (state / "cas-ca.pem").read_bytes() == ca_before
    copy = tmp_path / "stolen"
    shutil.copytree(state, copy)
    _attack(copy, needles)


def _grow_legacy(state: Path, extra: int) -> None:
    """More first-release rows (plaintext texts, legacy-sealed secrets), so a migration takes
    long enough to be killed in the middle."""
    from cloister.cas._keys import LegacySealer  # noqa: PLC0415
    from cloister.cas._sealed_store import secret_aad  # noqa: PLC0415

    sealer = LegacySealer((state / "master.key").read_bytes())
    db = sqlite3.connect(state / "cas.db")
    creator = db.execute("SELECT creator_key_hash, creator_cert_pem FROM session_versions"
                         ).fetchone()
    for i in range(extra):
        name, h = f"bulk-{i}", f"{i:064x}"
        db.execute("INSERT INTO session_versions (name, hash, predecessor, text, "
                   "creator_key_hash, creator_cert_pem, created_at) VALUES (?,?,?,?,?,?,?)",
                   (name, h, None, f"name: {name}\nnote: bulk-text-{i}\n", *creator, 1.0))
        db.execute("INSERT INTO current_sessions VALUES (?,?)", (name, h))
        db.execute("INSERT INTO secrets VALUES (?,?,?,?)",
                   (name, h, "s", sealer.seal(_ascii(f"bulk-secret-{i}"),
                                               secret_aad(name, h, "s", creator[0]))))
    db.commit()
    db.close()


def _ascii(text: str) -> bytes:
    return SecretValue.ascii(text).to_bytes()


def test_kill_9_mid_migration_then_rerun_loses_nothing(tmp_path: Path) -> None:
    state = copy_legacy(tmp_path / "state")
    _grow_legacy(state, 3000)
    texts = _legacy_texts(state)
    key_file = tmp_path / "new.key"
    argv = [CLOISTER, "cas", "migrate-state", "--state", str(state), "--seal", "file",
            "--key-file", str(key_file)]
    interrupted = 0
    for delay in (0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.6, 2.0):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            interrupted += (state / "master.key").exists()
        if not (state / "master.key").exists():
            break
    assert interrupted >= 1, "no kill landed in the middle of the migration"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    _check_migrated(state, key_file, texts)
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "nothing to migrate" in again.stderr
    store = open_store(ServerConfig(state=state, master_key_file=key_file))
    try:
        assert store.secrets("bulk-2999", f"{2999:064x}")["s"] == _ascii("bulk-secret-2999")
        assert store.check_integrity() == []
    finally:
        store.close()
    raw = b"".join(p.read_bytes() for p in state.iterdir() if p.is_file())
    assert b"bulk-secret-17" not in raw and b"bulk-text-17" not in raw


# --- rotation ------------------------------------------------------------------------------


def _under_term(state: Path, term: int, db: sqlite3.Connection | None = None) -> int:
    """Secret blobs sealed under data key ``term`` (the blob header is public)."""
    own = db is None
    db = sqlite3.connect(state / "cas.db", timeout=30) if db is None else db
    try:
        header = bytes([2]) + term.to_bytes(4, "big")
        return int(db.execute("SELECT count(*) FROM secrets WHERE substr(blob, 1, 5) = ?",
                              (header,)).fetchone()[0])
    finally:
        if own:
            db.close()


def test_rotation_while_serving_and_kill_9_mid_rotation(tmp_path: Path) -> None:
    state = copy_legacy(tmp_path / "state")
    _grow_legacy(state, 2000)
    key_file = tmp_path / "new.key"
    subprocess.run([CLOISTER, "cas", "migrate-state", "--state", str(state), "--seal", "file",
                    "--key-file", str(key_file)], check=True, capture_output=True)
    cas = CAS(state, tmp_path / "cas.log", ("--master-key-file", str(key_file)))
    cas.start()
    failures: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            reply = cas.curl("/v1/values/session=legacy-app")
            if reply.status != 200:
                failures.append(reply.body.decode())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        argv = [CLOISTER, "cas", "rotate-key", "--state", str(state)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        # A fast machine rewraps the 2000 secrets (ten 200-row batches) between two polls,
        # so the poll holds the write lock (WAL: the CAS's readers go on) and lets the
        # rewrap commit only in short gaps: once a batch under term 2 is seen, nothing
        # more can be committed before the kill lands.  The lock is retried by a tight
        # loop (no busy handler, whose sleeps grow to 100 ms), so it is taken back right
        # after each commit of the rewrap.
        watch = sqlite3.connect(state / "cas.db", timeout=0, isolation_level=None)

        def take_write_lock() -> None:
            while True:
                try:
                    watch.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError:  # the rewrap holds it: commit under way
                    time.sleep(0.0002)

        try:
            while time.monotonic() < deadline:
                take_write_lock()
                if _under_term(state, 2, watch) > 0:
                    break
                watch.execute("ROLLBACK")
                time.sleep(0.001)  # the gap in which the rewrap may commit a batch
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            if watch.in_transaction:
                watch.execute("ROLLBACK")
            watch.close()
        under = (_under_term(state, 1), _under_term(state, 2))
        print("secrets under terms 1 and 2 when killed:", under)
        killed = 0 < under[1] < sum(under)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "term 3 is active" in done.stdout and "still under" not in done.stdout
    finally:
        stop.set()
        thread.join()
        cas.stop()
    assert killed, f"the kill did not land in the middle of the rewrap: {under}"
    assert failures == []  # readers never stopped
    store = open_store(ServerConfig(state=state, master_key_file=key_file))
    try:
        assert store.keyring.terms == (1, 2, 3)
        assert store.check_integrity() == []
        assert store.secrets("bulk-1999", f"{1999:064x}")["s"] == _ascii("bulk-secret-1999")
    finally:
        store.close()
    assert json.loads((state / "seal.json").read_text())["type"] == "file"
