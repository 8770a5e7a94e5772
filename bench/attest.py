"""Attestation: attest + configuration delivery latency against a real CAS and LAS on loopback.

One run = what ``cloister run`` does before the program starts:
:func:`cloister.runtime._attest.fetch_config` (nonce over HTTPS, quote from
the LAS, evidence over HTTPS, configuration unsealed).  The baseline, paired
run by run (ABAB), is one plain HTTPS round trip to the same CAS
(``GET /healthz`` on a new connection), so the ratio says how many "HTTPS
round trips" an attestation costs.  The issue's target: p50 <= 50 ms.
Then attestations per second at 1, 16 and 64 concurrent keep-alive clients
(:mod:`bench._concurrency`: rate, p50 and p99).
"""

from __future__ import annotations

import time

from bench import _concurrency as concurrency
from bench._concurrency import CONCURRENCY, Job, make_identity
from bench._context import Context
from bench._procs import Platform
from bench._stats import Figure, Target, absolute, compared, median, percentile
from cloister.attest import measure
from cloister.runtime import RunSettings
from cloister.runtime._attest import fetch_config

SECTION = "attest"

#: a service like the patient API's: a CA, a server certificate, two injected files
SESSION = """\
name: {name}
version: "0.3"
services:
  - name: app
    image_name: app_image
    mrenclaves: [{measurement}]
    command: python3 /app/main.py
    environment:
      MODE: bench
images:
  - name: app_image
    injection_files:
      - path: /tls/server.crt
        content: $$SCONE::server.crt$$
      - path: /tls/server.key
        content: $$SCONE::server.key$$
secrets:
  - name: ca_key
    kind: private-key
  - name: ca
    kind: x509-ca
    private_key: ca_key
  - name: server_key
    kind: private-key
  - name: server
    kind: x509
    private_key: server_key
    issuer: ca
    dns: [localhost]
security:
  attestation:
    tolerate: [debug-mode]
"""


def settings_for(plat: Platform, config_id: str) -> RunSettings:
    return RunSettings(cas_addr=plat.cas_addr, las_addr=plat.las_addr, config_id=config_id,
                       cas_cert_pem=plat.cas_cert.read_text(), retry_seconds=5)


def start_platform(ctx: Context, name: str) -> tuple[Platform, str]:
    """A running CAS + LAS with the bench session created; returns the platform and config id."""
    plat = Platform(ctx.dir(name), ctx.procs)
    plat.start()
    plat.client().create_session(SESSION.format(name="bench-attest", measurement=measure()))
    return plat, "bench-attest/app"


def run(ctx: Context) -> list[Figure]:
    plat, config_id = start_platform(ctx, "attest")
    settings = settings_for(plat, config_id)
    client = plat.client()
    measurement = measure()
    for _ in range(5):  # warm-up: first connections, imports, caches
        fetch_config(settings, measurement, None)
        client.healthz()
    runs = ctx.pick(200, 50)
    ctx.say(f"attest: {runs} attestations, each paired with an HTTPS round trip")
    attest_ms: list[float] = []
    https_ms: list[float] = []
    steps: dict[str, list[float]] = {"nonce": [], "quote": [], "decision": []}
    for i in range(runs):
        for which in (("h", "a") if i % 2 == 0 else ("a", "h")):
            started = time.perf_counter()
            if which == "a":
                _, timings = fetch_config(settings, measurement, None)
                attest_ms.append((time.perf_counter() - started) * 1e3)
                steps["nonce"].append(timings.nonce * 1e3)
                steps["quote"].append(timings.quote * 1e3)
                steps["decision"].append(timings.decision * 1e3)
            else:
                client.healthz()
                https_ms.append((time.perf_counter() - started) * 1e3)
    figures = _concurrent(ctx, plat, config_id, measurement)
    breakdown = ", ".join(f"{k} {median(v):.1f} ms" for k, v in steps.items())
    p99 = percentile(attest_ms, 99)
    return [
        absolute(SECTION, "attest + config p50", "ms", attest_ms, target=Target("<=", 50),
                 note=f"{runs} runs of fetch_config on loopback; median of steps: {breakdown}; "
                      f"spread = min-max of single runs"),
        Figure(SECTION, "attest + config p99", "ms",
               subject=absolute(SECTION, "", "", [p99]).subject, target_on="value"),
        compared(SECTION, "attest + config vs HTTPS round trip", "ms", attest_ms, https_ms,
                 "GET /healthz", note="ratio per pair of adjacent runs (ABAB); an attestation "
                 "is two HTTPS requests to the CAS and one to the LAS"),
        Figure(SECTION, "HTTPS /healthz p99", "ms",
               subject=absolute(SECTION, "", "", [percentile(https_ms, 99)]).subject,
               target_on="value"),
        *figures,
    ]


def _concurrent(ctx: Context, plat: Platform, config_id: str, measurement: str) -> list[Figure]:
    """Attestations per second at 1, 16 and 64 concurrent keep-alive clients."""
    cert, key = make_identity(ctx.dir("attest-clients"), "bench-client")
    job = Job("attest", plat.cas_port, str(plat.cas_cert), str(cert), str(key),
              seconds=ctx.pick(6, 2), payload=config_id, las_addr=plat.las_addr,
              measurement=measurement)
    runs = []
    for clients in CONCURRENCY:
        ctx.say(f"attest: {clients} concurrent keep-alive clients attesting")
        runs.append(concurrency.run(job, clients, f"a{clients}"))
    return concurrency.figures(SECTION, "attestations", runs)
