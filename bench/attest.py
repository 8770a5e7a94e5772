"""Attestation: attest + configuration delivery latency against a real CAS and LAS on loopback.

One run = what ``cloister run`` does before the program starts:
:func:`cloister.runtime._attest.fetch_config` (nonce over HTTPS, quote from
the LAS, evidence over HTTPS, configuration unsealed).  The baseline, paired
run by run (ABAB), is one plain HTTPS round trip to the same CAS
(``GET /healthz`` on a new connection), so the ratio says how many "HTTPS
round trips" an attestation costs.  The loop runs inside a real ``cloister
run`` (:mod:`bench._attest_probe`): the LAS quotes for no other process, and
measures that one (interpreter, libpython, runtime) on every quote.  Target:
p50 <= 20 ms.  Then attestations per second at 1, 16 and 64 concurrent
keep-alive clients (:mod:`bench._concurrency`: rate, p50 and p99), whose
evidence is signed with the LAS's key (the CAS alone).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bench import _concurrency as concurrency
from bench._concurrency import CONCURRENCY, Job, make_identity
from bench._context import Context
from bench._procs import CLOISTER, Platform
from bench._procs import measure as _measure
from bench._stats import Figure, Target, absolute, compared, median, percentile
from cloister.attest import (
    generate_ephemeral_key,
    open_sealed,
    public_key_bytes_of,
    report_data,
    simulation,
)
from cloister.client._transport import post_json

SECTION = "attest"
PROBE = Path(__file__).with_name("_attest_probe.py")
measure = functools.cache(_measure)

#: a service like the patient API's: a CA, a server certificate, two injected files; its
#: program is the timing loop, run inside the attested process (the LAS quotes no other)
SESSION = """\
name: {name}
version: "0.3"
services:
  - name: app
    image_name: app_image
    mrenclaves: [{measurement}]
    command: python3 {probe} {out} {runs}
    environment:
      MODE: bench
      CLOISTER_CAS_ADDR: {cas}
      CLOISTER_LAS_ADDR: {las}
      CLOISTER_CAS_CERT: {cert}
      CLOISTER_CONFIG_ID: {name}/app
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


def start_platform(ctx: Context, name: str,
                   cas_args: Sequence[str] = ()) -> tuple[Platform, str]:
    """A running CAS (``cas_args`` added to ``cloister cas serve``) + LAS with a session
    whose measurement the CAS-only attestation of :func:`attest_at_cas` presents; returns
    the platform and config id."""
    plat = Platform(ctx.dir(name), ctx.procs, cas_args)
    plat.start()
    return plat, _cas_only_session(plat)


def _cas_only_session(plat: Platform) -> str:
    plat.client().create_session(SESSION.format(
        name="bench-cas-attest", measurement=measure(), probe=PROBE, out="/nonexistent",
        runs=0, cas=plat.cas_addr, las=plat.las_addr, cert=plat.cas_cert))
    return "bench-cas-attest/app"


def attest_at_cas(plat: Platform, config_id: str) -> None:
    """The CAS's side of one attestation: nonce, evidence, sealed configuration opened.

    The evidence is signed with the LAS's own key from its state (as the host's root
    could), so this times the CAS alone; :func:`run` times the whole path.
    """
    host, port = plat.cas_addr.rsplit(":", 1)
    pem = plat.cas_cert.read_text()
    nonce = bytes.fromhex(post_json(host, int(port), "/v1/attest/nonce", {}, pem)["nonce"])
    key = generate_ephemeral_key()
    public = public_key_bytes_of(key)
    evidence = simulation.sign_simulation(
        simulation.load_or_create_platform_key(plat.las_state), measurement=measure(),
        fspf_tag=None, report_data_hex=report_data(nonce, public).hex(), uid=os.getuid(),
        gid=os.getgid())
    answer = post_json(host, int(port), "/v1/attest/config", {
        "config_id": config_id, "nonce": nonce.hex(), "public_key": public.hex(),
        "evidence": base64.b64encode(evidence).decode()}, pem)
    open_sealed(key, base64.b64decode(answer["sealed_config"]))


def run(ctx: Context) -> list[Figure]:
    plat = Platform(ctx.dir("attest"), ctx.procs)
    plat.start()
    runs = ctx.pick(200, 50)
    out = ctx.dir("attest") / "times.json"
    plat.client().create_session(SESSION.format(
        name="bench-attest", measurement=measure(), probe=PROBE, out=out, runs=runs,
        cas=plat.cas_addr, las=plat.las_addr, cert=plat.cas_cert))
    ctx.say(f"attest: {runs} attestations, each paired with an HTTPS round trip, from inside "
            "an attested process")
    done = subprocess.run([CLOISTER, "run"], env=plat.env("bench-attest/app"),
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the attest probe failed: {done.stderr.strip()[-400:]}")
    times = json.loads(out.read_text())
    attest_ms, https_ms = times["attest"], times["https"]
    steps = {k: times[k] for k in ("nonce", "quote", "decision")}
    figures = _concurrent(ctx, plat, _cas_only_session(plat), measure())
    breakdown = ", ".join(f"{k} {median(v):.1f} ms" for k, v in steps.items())
    p99 = percentile(attest_ms, 99)
    return [
        absolute(SECTION, "attest + config p50", "ms", attest_ms, target=Target("<=", 20),
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
              seconds=ctx.pick(6, 2), payload=config_id, las_state=str(plat.las_state),
              measurement=measurement, server_pid=plat.cas_pid)
    runs = []
    for clients in CONCURRENCY:
        ctx.say(f"attest: {clients} concurrent keep-alive clients attesting")
        runs.append(concurrency.run(job, clients, f"a{clients}"))
    return concurrency.figures(SECTION, "attestations", runs)
