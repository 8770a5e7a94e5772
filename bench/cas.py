"""CAS: sessions with certificates per second, attestations per second, in-process issuance.

Each round measures, in this order, ``openssl speed -seconds 2 ecdsap256``
(P-256 signatures per second: the machine's raw signing speed, the yardstick),
a batch of session creations over HTTPS (each session: a CA and a server
certificate, so two key generations and two signatures; the CAS's own client,
one new TLS connection per request, one at a time), a batch of attestations
(nonce, evidence signed with the LAS's key, config; one at a time), and
in-process issuance of the same secrets with :func:`cloister.secrets.generate`.
Each rate's ratio is against the same round's openssl figure.

Then sessions per second at 1, 16 and 64 concurrent keep-alive clients
(:mod:`bench._concurrency`: rate, p50 and p99).

Context: Redis SET/GET through TLS vs plain with ``redis-benchmark`` (both
servers started here, certificates from :func:`cloister.secrets.generate`).
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import time
from pathlib import Path

from bench import _concurrency as concurrency
from bench._concurrency import CONCURRENCY, Job, make_identity
from bench._context import Context
from bench._procs import Platform, free_port, have, wait_port
from bench._stats import Figure, Target, absolute, compared, skipped
from bench.attest import attest_at_cas, start_platform
from cloister import policy, secrets

SECTION = "cas"

SESSION = """\
name: {name}
version: "0.3"
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
    san: ["ip:127.0.0.1"]
"""

REDIS_CERTS = SESSION + """\
  - name: client_key
    kind: private-key
  - name: client
    kind: x509
    private_key: client_key
    issuer: ca
    endpoint: client
"""

_SPEED = re.compile(r"256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)")


def openssl_signs_per_second(seconds: int = 2) -> float:
    out = subprocess.run(["openssl", "speed", "-seconds", str(seconds), "ecdsap256"],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    match = _SPEED.search(out)
    if match is None:
        raise RuntimeError(f"cannot read openssl speed output: {out[-300:]}")
    return float(match.group(1))


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def run(ctx: Context) -> list[Figure]:
    if reason := have("openssl"):
        return [skipped(SECTION, "(section)", reason)]
    plat, config_id = start_platform(ctx, "cas")
    client = plat.client()
    spec = policy.load_session(SESSION.format(name="spec")).secrets
    rounds = ctx.pick(3, 2)
    batch = ctx.pick(16, 6)
    budget = ctx.pick(3, 1)  # seconds of attestations / in-process issuance per round
    openssl_rate: list[float] = []
    session_rate: list[float] = []
    attest_rate: list[float] = []
    issue_rate: list[float] = []
    session_ms: list[float] = []
    attest_ms: list[float] = []
    for _ in range(3):  # warm-up
        attest_at_cas(plat, config_id)
        secrets.generate(spec)
    serial = 0
    for r in range(rounds):
        ctx.say(f"cas: round {r + 1}/{rounds}: openssl speed, {batch} sessions, "
                f"{budget}s of attestations, {budget}s of in-process issuance")
        openssl_rate.append(openssl_signs_per_second())
        started = time.perf_counter()
        for _ in range(batch):
            serial += 1
            t0 = time.perf_counter()
            client.create_session(SESSION.format(name=f"bench-cas-{serial}"))
            session_ms.append((time.perf_counter() - t0) * 1e3)
        session_rate.append(_rate(batch, time.perf_counter() - started))
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < budget:
            t0 = time.perf_counter()
            attest_at_cas(plat, config_id)
            attest_ms.append((time.perf_counter() - t0) * 1e3)
            count += 1
        attest_rate.append(_rate(count, time.perf_counter() - started))
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < budget:
            secrets.generate(spec)
            count += 2  # two certificates per generate
        issue_rate.append(_rate(count, time.perf_counter() - started))
    sig = "openssl P-256 sign/s"
    figures = [
        absolute(SECTION, "openssl speed ecdsap256", "sign/s", openssl_rate,
                 note="`openssl speed -seconds 2 ecdsap256`, one core; the yardstick of "
                      "this section's ratios"),
        compared(SECTION, "sessions with CA + cert created over HTTPS", "/s", session_rate,
                 openssl_rate, sig, note="one client, a new TLS connection per request; each "
                 "session: 2 P-256 keys + 2 certificates, validated, stored encrypted"),
        absolute(SECTION, "session create latency p50", "ms", session_ms),
        Figure(SECTION, "session create latency p99", "ms",
               subject=absolute(SECTION, "", "", [_p99(session_ms)]).subject,
               target_on="value"),
        compared(SECTION, "attestations (nonce+quote+config)", "/s", attest_rate,
                 openssl_rate, sig, note="nonce + evidence (signed with the LAS's key) + "
                 "config, one at a time against the same CAS: the CAS alone"),
        absolute(SECTION, "attestation latency p50", "ms", attest_ms),
        Figure(SECTION, "attestation latency p99", "ms",
               subject=absolute(SECTION, "", "", [_p99(attest_ms)]).subject,
               target_on="value"),
        compared(SECTION, "in-process issuance: certificates (secrets.generate)", "/s", issue_rate,
                 openssl_rate, sig, target=Target(">=", 0.30),
                 note="certificates per second from cloister.secrets.generate of the same "
                      "secrets (each certificate also needs its P-256 key generated)"),
    ]
    figures += _concurrent_sessions(ctx, plat)
    ctx.procs.stop_all()
    figures += _redis(ctx)
    return figures


def _concurrent_sessions(ctx: Context, plat: Platform) -> list[Figure]:
    """Sessions per second at 1, 16 and 64 concurrent keep-alive clients."""
    cert, key = make_identity(ctx.dir("cas-clients"), "bench-client")
    job = Job("session", plat.cas_port, str(plat.cas_cert), str(cert), str(key),
              seconds=ctx.pick(6, 2), payload=SESSION, server_pid=plat.cas_pid)
    runs = []
    for clients in CONCURRENCY:
        ctx.say(f"cas: {clients} concurrent keep-alive clients creating sessions")
        runs.append(concurrency.run(job, clients, f"s{clients}"))
    return concurrency.figures(SECTION, "sessions created", runs)


def _p99(values: list[float]) -> float:
    from bench._stats import percentile  # noqa: PLC0415

    return percentile(values, 99)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _redis_benchmark(port: int, tls: list[str], requests: int) -> dict[str, float]:
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get",
         "-n", str(requests), "-c", "16", "--csv", *tls],
        check=True, capture_output=True, text=True, timeout=120).stdout
    rates = {}
    for row in csv.reader(io.StringIO(out)):
        if len(row) >= 2 and row[0] in ("SET", "GET"):
            rates[row[0]] = float(row[1])
    if len(rates) != 2:
        raise RuntimeError(f"cannot read redis-benchmark output: {out[-300:]}")
    return rates


def _redis(ctx: Context) -> list[Figure]:
    names = ("Redis SET (TLS vs plain)", "Redis GET (TLS vs plain)")
    for tool in ("redis-server", "redis-benchmark"):
        if reason := have(tool):
            return [skipped(SECTION, name, reason) for name in names]
    tls_dir = ctx.dir("redis-certs")
    values = secrets.generate(policy.load_session(REDIS_CERTS.format(name="r")).secrets)
    files = {"ca.crt": "$$SCONE::ca.crt$$", "server.crt": "$$SCONE::server.crt$$",
             "server.key": "$$SCONE::server.key$$", "client.crt": "$$SCONE::client.crt$$",
             "client.key": "$$SCONE::client.key$$"}
    for name, ref in files.items():
        _write_private(tls_dir / name, secrets.render_text(ref, values))
    plain_port, tls_port = free_port(), free_port()
    common = ["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
    plain, plain_log = ctx.procs.start("redis-plain", ["redis-server", "--port",
                                                       str(plain_port), *common])
    tls, tls_log = ctx.procs.start("redis-tls", [
        "redis-server", "--port", "0", "--tls-port", str(tls_port),
        "--tls-cert-file", str(tls_dir / "server.crt"),
        "--tls-key-file", str(tls_dir / "server.key"),
        "--tls-ca-cert-file", str(tls_dir / "ca.crt"), "--tls-auth-clients", "yes", *common])
    wait_port(plain_port, plain, plain_log)
    wait_port(tls_port, tls, tls_log)
    tls_args = ["--tls", "--cert", str(tls_dir / "client.crt"), "--key",
                str(tls_dir / "client.key"), "--cacert", str(tls_dir / "ca.crt")]
    requests = ctx.pick(50000, 10000)
    rounds = ctx.pick(3, 1)
    got: dict[str, dict[str, list[float]]] = {"tls": {"SET": [], "GET": []},
                                               "plain": {"SET": [], "GET": []}}
    ctx.say(f"cas: redis-benchmark, {rounds} rounds of {requests} SET+GET, TLS and plain")
    for i in range(rounds):
        order = ("plain", "tls") if i % 2 == 0 else ("tls", "plain")
        for which in order:
            rates = _redis_benchmark(tls_port if which == "tls" else plain_port,
                                     tls_args if which == "tls" else [], requests)
            for op, rate in rates.items():
                got[which][op].append(rate)
    return [compared(SECTION, f"Redis {op} (TLS vs plain)", "req/s", got["tls"][op],
                     got["plain"][op], "plain",
                     note="redis-benchmark -c 16, mutual TLS, for context" if op == "SET" else "")
            for op in ("SET", "GET")]
