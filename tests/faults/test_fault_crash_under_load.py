"""kill -9 the CAS while 16 keep-alive clients create sessions (issue 20): nothing acknowledged
is lost or half-written, though the store commits concurrent creates together (group commit).

Each client keeps one HTTPS connection with a client certificate (as the bench's clients do)
and records every session answered 201.  Once at least ``ACKED`` sessions are acknowledged the
CAS is killed with SIGKILL while all 16 are still sending.  Then, on the stopped state: the
integrity check passes (SQLite's and every sealed blob's), every acknowledged session is
there with every one of its secrets, and so is any session that was written but not yet
answered (all or nothing); after a restart every acknowledged session reads back over HTTPS
with its exported CA certificate.  The CAS's metrics, read just before the kill, show that
commits were shared — the crash hit the batched path.  Bounds: up to 240 s to get the
acknowledgements on a loaded machine.
"""

from __future__ import annotations

import http.client
import re
import ssl
import threading
from pathlib import Path

import pytest
from fault_harness import json_error  # noqa: F401  (puts tests/integration on sys.path)

from cas_harness import CAS, Identity, make_identity  # isort: skip

from cryptography import x509

from cloister.cas import ServerConfig, check_state, open_store
from cloister.policy import load_session

pytestmark = pytest.mark.slow

CLIENTS = 16
ACKED = 300

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
    dns: [localhost]
  - name: pw
    kind: ascii
"""


def _connection(cas: CAS, ident: Identity) -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context(cafile=str(cas.state / "cas-ca.pem"))
    ctx.load_cert_chain(str(ident.cert), str(ident.key))
    return http.client.HTTPSConnection("localhost", cas.port, context=ctx, timeout=30)


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, flags=re.M)
    return float(found.group(1)) if found else 0.0


def test_kill9_under_16_clients_loses_no_acknowledged_session(tmp_path: Path) -> None:
    ident = make_identity(tmp_path / "ids", "writer")
    cas = CAS(tmp_path / "state", tmp_path / "cas.log",
              ("--limit", "max_sessions_per_creator=100000"))
    cas.start()
    acknowledged: set[str] = set()
    sent: set[str] = set()
    lock = threading.Lock()
    enough, dead = threading.Event(), threading.Event()

    def client(n: int) -> None:
        conn = _connection(cas, ident)
        i = 0
        while not dead.is_set():
            name = f"load-{n}-{i}"
            i += 1
            with lock:
                sent.add(name)
            try:
                conn.request("POST", "/v1/sessions", body=TEMPLATE.format(name=name).encode(),
                             headers={"Content-Type": "application/x-yaml"})
                reply = conn.getresponse()
                reply.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                if dead.is_set():
                    return
                conn = _connection(cas, ident)
                continue
            if reply.status == 201:
                with lock:
                    acknowledged.add(name)
                    if len(acknowledged) >= ACKED:
                        enough.set()
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        assert enough.wait(timeout=240), f"only {len(acknowledged)} sessions acknowledged"
        metrics = cas.curl("/metrics", identity=ident).body.decode()
        cas.kill9()  # while the 16 clients are still sending
    finally:
        dead.set()
        for thread in threads:
            thread.join(timeout=60)
    commits = _metric(metrics, "cloister_cas_store_commits")
    writes = _metric(metrics, "cloister_cas_store_writes")
    assert commits > 0 and writes > commits, \
        f"the store never shared a commit ({writes:.0f} writes in {commits:.0f} commits)"

    config = ServerConfig(state=cas.state)
    assert check_state(config) == []  # integrity_check, every blob opens, texts match hashes
    store = open_store(config)
    try:
        stored = set(store.names())
        lost = sorted(acknowledged - stored)
        assert not lost, f"{len(lost)} acknowledged sessions are gone after kill -9: {lost[:5]}"
        assert stored <= sent
        for name in stored:  # acknowledged or not: each one whole
            record = store.current(name)
            assert record is not None
            expected = {s.name for s in load_session(record.text).secrets}
            assert set(store.secrets(name, record.hash)) == expected, f"{name} is half-written"
    finally:
        store.close()

    cas.start()
    try:
        for name in sorted(acknowledged)[:: max(1, len(acknowledged) // 60)]:
            assert cas.curl(f"/v1/sessions/{name}", identity=ident).status == 200, name
            pem = cas.curl(f"/v1/values/session={name},secret=ca", insecure=True).json()["value"]
            x509.load_pem_x509_certificate(pem.encode())
    finally:
        cas.stop()
