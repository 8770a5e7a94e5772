"""kill -9 the CAS while 8 clients create sessions: nothing acknowledged is lost or half-written."""

from __future__ import annotations

import threading
from pathlib import Path

from cas_harness import CAS, make_identity
from cryptography import x509

from cloister.cas import ServerConfig, check_state, open_store
from cloister.policy import load_session

TEMPLATE = """\
name: {name}
version: "0.3"
secrets:
  - name: ca_key
    kind: private-key
  - name: ca
    kind: x509-ca
    private_key: ca_key
    export_public: true
  - name: leaf_key
    kind: private-key
  - name: leaf
    kind: x509
    private_key: leaf_key
    issuer: ca
  - name: pw
    kind: ascii
"""


def test_kill9_during_creates_loses_nothing_acknowledged(tmp_path: Path) -> None:
    ident = make_identity(tmp_path / "ids", "writer")
    cas = CAS(tmp_path / "state", tmp_path / "cas.log")
    cas.start()
    acknowledged: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()
    dead = threading.Event()

    def client(n: int) -> None:
        i = 0
        while not dead.is_set():
            name = f"crash-{n}-{i}"
            i += 1
            try:
                body = TEMPLATE.format(name=name).encode()
                reply = cas.curl("/session", identity=ident, data=body)
            except Exception:
                continue
            if reply.status == 201:
                with lock:
                    acknowledged.append(name)
                    if len(acknowledged) >= 40:
                        enough.set()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    enough.wait(timeout=240)
    cas.kill9()  # while the 8 loops are still sending
    dead.set()
    for t in threads:
        t.join()
    assert len(acknowledged) >= 40

    config = ServerConfig(state=cas.state)
    assert check_state(config) == []  # PRAGMA integrity_check + every secret opens
    store = open_store(config)
    try:
        names = [f"crash-{n}-{i}" for n in range(8) for i in range(200)]
        for name in names:
            record = store.current(name)
            if record is None:
                assert name not in acknowledged
                continue
            # complete: every secret of the stored session has its sealed value
            expected = {s.name for s in load_session(record.text).secrets}
            assert set(store.secrets(name, record.hash)) == expected, name
    finally:
        store.close()

    cas.start()
    try:
        for name in acknowledged:
            read = cas.curl(f"/v1/sessions/{name}", identity=ident)
            assert read.status == 200, name
            pem = cas.curl(f"/v1/values/session={name},secret=ca", insecure=True).json()["value"]
            x509.load_pem_x509_certificate(pem.encode())
    finally:
        cas.stop()
