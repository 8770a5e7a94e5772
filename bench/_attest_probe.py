"""Workload of the attest section: attestations timed from inside an attested process.

The LAS quotes only for ``python -I -m cloister.cli run``, so the loop runs
as the program of a real ``cloister run`` (its environment is the policy's:
the CAS and LAS settings are in it).  Each round is one
:func:`cloister.runtime._attest.fetch_config` — what ``cloister run`` does
before the program starts — and one plain HTTPS round trip to the same CAS
(``GET /healthz`` on a new connection), alternating (ABAB).  Writes one JSON
object of milliseconds to ``argv[1]``.
"""

import http.client
import json
import ssl
import sys
import time

from cloister._address import parse_host_port
from cloister.runtime import RunSettings
from cloister.runtime._attest import fetch_config
from cloister.runtime._settings import DEFAULT_CAS_PORT

out, runs = sys.argv[1], int(sys.argv[2])
settings = RunSettings.from_env()
where = parse_host_port(settings.cas_addr, default_port=DEFAULT_CAS_PORT, what="CAS address",
                        example="CLOISTER_CAS_ADDR=127.0.0.1:8081")
host, port = where.host, where.port
tls = ssl.create_default_context(cadata=settings.cas_cert_pem)
tls.check_hostname = False  # pinned: the CA is this CAS's own


def healthz() -> None:
    conn = http.client.HTTPSConnection(host, port, timeout=30, context=tls)
    try:
        conn.request("GET", "/healthz")
        conn.getresponse().read()
    finally:
        conn.close()


for _ in range(5):  # warm-up: first connections, imports, caches
    fetch_config(settings, None)
    healthz()
result: dict[str, list[float]] = {"attest": [], "https": [], "nonce": [], "quote": [],
                                  "decision": []}
for i in range(runs):
    for which in (("h", "a") if i % 2 == 0 else ("a", "h")):
        started = time.perf_counter()
        if which == "a":
            _, timings = fetch_config(settings, None)
            result["attest"].append((time.perf_counter() - started) * 1e3)
            result["nonce"].append(timings.nonce * 1e3)
            result["quote"].append(timings.quote * 1e3)
            result["decision"].append(timings.decision * 1e3)
        else:
            healthz()
            result["https"].append((time.perf_counter() - started) * 1e3)
with open(out, "w") as fh:
    json.dump(result, fh)
