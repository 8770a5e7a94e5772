"""Key-generation exhaustion: 16 identities post maximum-size sessions full of RSA keys.

RSA-4096 is not a key type of the policy language (the largest is RSA-3072), so such a
session is refused at once as invalid; the attack uses RSA-3072, the costliest key there
is.  Bounds (generous, stated): a legitimate create within 10 s during the attack, and
one with an RSA-3072 key of its own (a fair turn at the key processes, then seconds of
CPU on a loaded machine) within 30 s; once the attackers hang up, the CAS and its key
processes use less than a quarter of a core from 2 s on.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from abuse_harness import cpu_seconds, descendants, tls_context, tls_socket
from fault_harness import json_error, tmpfs  # noqa: F401  (puts tests/integration on sys.path)

from cas_harness import CAS, make_identity  # isort: skip

from cloister.cas import Limits

pytestmark = pytest.mark.slow

MAX_SECRETS = Limits().max_secrets_per_session
ATTACKERS = 16


def rsa_session(name: str, keys: int, key_type: str = "RSA-3072") -> str:
    lines = [f"name: {name}", 'version: "0.3"', "secrets:"]
    for i in range(keys):
        lines += [f"  - name: k{i}", "    kind: private-key", f"    key_type: {key_type}"]
    return "\n".join(lines) + "\n"


LEGIT_EC = """\
name: {name}
version: "0.3"
secrets:
  - name: ca_key
    kind: private-key
  - name: ca
    kind: x509-ca
    private_key: ca_key
"""

LEGIT = """\
name: {name}
version: "0.3"
secrets:
  - name: ca_key
    kind: private-key
  - name: ca
    kind: x509-ca
    private_key: ca_key
  - name: signing_key
    kind: private-key
    key_type: RSA-3072
"""


def test_rsa_floods_are_bounded_cancelled_and_fair(tmp_path: Path) -> None:
    cas = CAS(tmp_path / "cas", tmp_path / "cas.log",
              extra_args=("--limit", "max_sessions_per_creator=3"))
    cas.start()
    assert cas.proc is not None
    try:
        owner = make_identity(tmp_path / "ids", "owner")
        # over-quota and invalid requests are refused at once, naming the limit
        reply = cas.curl("/v1/sessions", identity=owner,
                         data=rsa_session("too-many", MAX_SECRETS + 1).encode())
        err = json_error(reply.status, reply.body)
        assert reply.status == 403 and "max_secrets_per_session" in err["message"], err
        reply = cas.curl("/v1/sessions", identity=owner,
                         data=rsa_session("rsa4096", 1, "RSA-4096").encode())
        assert reply.status == 400 and b"RSA-4096" in reply.body, reply.body
        for i in range(3):
            assert cas.curl("/v1/sessions", identity=owner,
                            data=LEGIT.format(name=f"mine-{i}").encode()).status == 201
        reply = cas.curl("/v1/sessions", identity=owner, data=LEGIT.format(name="mine-3").encode())
        err = json_error(reply.status, reply.body)
        assert reply.status == 403 and "max_sessions_per_creator" in err["message"], err

        # the attack: each attacker posts a maximum-size session and waits for it
        ca = cas.state / "cas-ca.pem"
        body = rsa_session("{name}", MAX_SECRETS)
        hang_up = threading.Event()
        sent = []

        def attack(i: int) -> None:
            ident = make_identity(tmp_path / "ids", f"attacker-{i}")
            sock = tls_socket(cas.port, tls_context(ca, (ident.cert, ident.key)), "127.0.0.2")
            data = body.replace("{name}", f"attack-{i}").encode()
            sock.sendall(b"POST /v1/sessions HTTP/1.1\r\nHost: localhost\r\n"
                         b"Content-Type: application/x-yaml\r\n"
                         + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
            sent.append(i)
            hang_up.wait(120)
            sock.close()

        attackers = [threading.Thread(target=attack, args=(i,), daemon=True)
                     for i in range(ATTACKERS)]
        for thread in attackers:
            thread.start()
        deadline = time.monotonic() + 30
        while len(sent) < ATTACKERS and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(sent) == ATTACKERS
        time.sleep(2)
        workers = descendants(cas.proc.pid)
        assert workers == Limits().keygen_processes, f"{workers} key processes during the attack"

        legit = make_identity(tmp_path / "ids", "legit")
        took = {}
        for name, text in (("legit-ec", LEGIT_EC), ("legit-rsa", LEGIT)):
            started = time.monotonic()
            reply = cas.curl("/v1/sessions", identity=legit, data=text.format(name=name).encode())
            took[name] = time.monotonic() - started
            assert reply.status == 201, reply.body
        print(f"during the RSA flood: legitimate creates took {took}")
        assert took["legit-ec"] < 10, f"a legitimate create was slow during the flood: {took}"
        # with an RSA key of its own it waits for a key process and makes its key there
        assert took["legit-rsa"] < 30, f"a fair turn at the key processes took {took}"

        hang_up.set()
        for thread in attackers:
            thread.join(timeout=10)
        time.sleep(2)
        before = cpu_seconds(cas.proc.pid)
        time.sleep(2)
        after_hangup = (cpu_seconds(cas.proc.pid) - before) / 2
        assert descendants(cas.proc.pid) <= Limits().keygen_processes  # idle spares at most
        print(f"RSA flood: legitimate creates {took} s, "
              f"{after_hangup:.3f} cores from 2 s after the attackers hung up")
        assert after_hangup < 0.25, (
            f"{after_hangup:.2f} cores still busy after the attackers disconnected")
        for i in range(ATTACKERS):  # nothing of the abandoned sessions was stored
            assert cas.curl(f"/v1/sessions/attack-{i}", identity=owner).status == 404
        assert cas.curl("/healthz").status == 200
    finally:
        cas.stop()
