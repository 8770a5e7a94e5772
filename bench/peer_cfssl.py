"""Peer: cloister's CAS next to CloudFlare's PKI server ``cfssl serve``, in the same run.

The peer is Debian's ``golang-cfssl``: ``cfssl serve`` over HTTPS with a
throwaway P-256 CA (``cfssl gencert -initca``), each request
``POST /api/v1/cfssl/newcert`` (a new P-256 key and a certificate signed by
the CA; cfssl neither validates a policy, nor seals, nor stores, nor audits).
cloister's side is the CAS creating sessions with a CA and a server
certificate (two keys, two certificates; validated, sealed, stored, audited),
served by :data:`CAS_PROCESSES` CAS processes on one port (``cloister cas
serve --processes``), as cfssl serves from every core.

At 1, 16 and 64 keep-alive clients (:mod:`bench._concurrency`), rounds
alternate cfssl and cloister (ABAB), and each round's ratio is cloister's
certificates per second (2 per session) over cfssl's.  Then attestations per
second (nonce + evidence + configuration) against the same CAS at the same
concurrencies.  Without ``cfssl`` on PATH the cfssl lines are skipped with
the reason and cloister's lines are still measured.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bench import _concurrency as concurrency
from bench._concurrency import CONCURRENCY, Job, Run, make_identity
from bench._context import Context
from bench._procs import free_port, have, measure, wait_port
from bench._stats import Figure, Summary, Target, paired_ratios, percentile, skipped
from bench.attest import start_platform
from bench.cas import SESSION

SECTION = "peer"
#: certificates per cloister session (the CA and the server certificate)
CERTS_PER_SESSION = 2
#: the issue's target for cloister's certificates/s over cfssl's
TARGET = Target(">=", 0.5)
#: the issue's target for sessions/s and attestations/s at 16 clients
RATE_TARGET = Target(">=", 1000)
#: CAS processes sharing the port (one per core of the 2-core bench machine)
CAS_PROCESSES = 2

_SIGNING = {"signing": {"default": {"expiry": "24h", "usages": [
    "signing", "key encipherment", "server auth", "client auth"]}}}


def run(ctx: Context) -> list[Figure]:
    plat, config_id = start_platform(ctx, "peer", ("--processes", str(CAS_PROCESSES)))
    cert, key = make_identity(ctx.dir("peer-clients"), "bench-client")
    seconds = ctx.pick(6, 2)
    rounds = ctx.pick(2, 1)
    cas = Job("session", plat.cas_port, str(plat.cas_cert), str(cert), str(key),
              seconds=seconds, payload=SESSION, server_pid=plat.cas_pid)
    attest = Job("attest", plat.cas_port, str(plat.cas_cert), str(cert), str(key),
                 seconds=seconds, payload=config_id, las_state=str(plat.las_state),
                 measurement=measure(), server_pid=plat.cas_pid)
    missing = have("cfssl")
    peer = None if missing else _start_cfssl(ctx, cert, key, seconds)
    figures: list[Figure] = []
    for clients in CONCURRENCY:
        cas_runs: list[Run] = []
        peer_runs: list[Run] = []
        for r in range(rounds):
            ctx.say(f"peer: {clients} clients, round {r + 1}/{rounds}: cfssl newcert and "
                    "cloister sessions, alternating")
            for which in (("peer", "cas") if r % 2 == 0 else ("cas", "peer")):
                if which == "cas":
                    cas_runs.append(concurrency.run(cas, clients, f"p{clients}-{r}"))
                elif peer is not None:
                    peer_runs.append(concurrency.run(peer, clients, f"f{clients}-{r}"))
        ctx.say(f"peer: {clients} clients attesting")
        attest_run = concurrency.run(attest, clients, f"pa{clients}")
        figures += side_by_side(clients, cas_runs, peer_runs, missing or "")
        figures += concurrency.figures(SECTION, "cloister attestations", [attest_run],
                                       target=RATE_TARGET)
    return figures


def _start_cfssl(ctx: Context, cert: Path, key: Path, seconds: int) -> Job:
    """``cfssl serve`` over HTTPS with a throwaway CA; the job that asks it for certificates."""
    root = ctx.dir("cfssl")
    (root / "ca.json").write_text(json.dumps(
        {"CN": "cfssl bench CA", "key": {"algo": "ecdsa", "size": 256}}))
    (root / "tls.json").write_text(json.dumps(
        {"CN": "localhost", "hosts": ["localhost", "127.0.0.1"],
         "key": {"algo": "ecdsa", "size": 256}}))
    (root / "config.json").write_text(json.dumps(_SIGNING))
    _gencert(root, "ca", ["-initca", "ca.json"])
    _gencert(root, "tls", ["-ca", "ca.pem", "-ca-key", "ca-key.pem", "-config", "config.json",
                           "tls.json"])
    port = free_port()
    # -loglevel 3: warnings only, not a log line per request
    proc, log = ctx.procs.start("cfssl", [
        "cfssl", "serve", "-address", "127.0.0.1", "-port", str(port), "-ca", "ca.pem",
        "-ca-key", "ca-key.pem", "-config", "config.json", "-tls-cert", "tls.pem",
        "-tls-key", "tls-key.pem", "-loglevel", "3"], cwd=str(root))
    wait_port(port, proc, log)
    return Job("cfssl", port, str(root / "ca.pem"), str(cert), str(key), seconds=seconds,
               payload="", server_pid=proc.pid)


def _gencert(root: Path, name: str, args: list[str]) -> None:
    """``cfssl gencert ARGS`` → ``root/NAME.pem`` and ``root/NAME-key.pem`` (0600)."""
    done = subprocess.run(["cfssl", "gencert", *args], cwd=root, check=True,
                          capture_output=True, text=True, timeout=60)
    out = json.loads(done.stdout)
    (root / f"{name}.pem").write_text(out["cert"])
    key = root / f"{name}-key.pem"
    key.touch(mode=0o600)
    key.write_text(out["key"])


def side_by_side(clients: int, cas_runs: Sequence[Run], peer_runs: Sequence[Run],
                 missing: str = "") -> list[Figure]:
    """cloister sessions/s, cfssl certificates/s, and the certificates ratio at ``clients``.

    ``cas_runs[i]`` and ``peer_runs[i]`` are round ``i`` of each; without peer
    runs (``missing`` says why) the cfssl line and the ratio are skipped.
    """
    plural = "s" if clients > 1 else ""
    figures = [_rate_figure(f"cloister sessions (CA + leaf), {clients} client{plural}",
                            cas_runs, f"sessions created, validated, sealed, stored, "
                            f"audited; {CAS_PROCESSES} CAS processes",
                            RATE_TARGET if clients == concurrency.TARGET_CLIENTS else None)]
    ratio_name = f"cloister certificates vs cfssl, {clients} client{plural}"
    if not peer_runs:
        reason = missing or "cfssl was not measured"
        return [*figures, skipped(SECTION, f"cfssl newcert, {clients} client{plural}", reason),
                skipped(SECTION, ratio_name, reason)]
    figures.append(_rate_figure(f"cfssl newcert, {clients} client{plural}", peer_runs,
                                "a new P-256 key + certificate per request"))
    cas_certs = [r.rate * CERTS_PER_SESSION for r in cas_runs]
    peer_certs = [r.rate for r in peer_runs]
    figures.append(Figure(
        SECTION, ratio_name, "cert/s", subject=Summary.of(cas_certs),
        baseline=Summary.of(peer_certs), baseline_name="cfssl newcert",
        ratio=Summary.of(paired_ratios(cas_certs, peer_certs)), target=TARGET,
        note=f"{CERTS_PER_SESSION} certificates per session; rounds alternate (ABAB)",
        extra={"clients": clients}))
    figures += _cpu_figure(clients, cas_runs, peer_runs)
    return figures


def _cpu_figure(clients: int, cas_runs: Sequence[Run], peer_runs: Sequence[Run]) -> list[Figure]:
    """Server CPU per certificate, cloister over cfssl (what each costs, whoever loads it)."""
    cas_ms = [ms / CERTS_PER_SESSION for r in cas_runs
              if (ms := r.cpu_ms_per_request(r.server_cpu)) is not None]
    peer_ms = [ms for r in peer_runs if (ms := r.cpu_ms_per_request(r.server_cpu)) is not None]
    if not cas_ms or len(cas_ms) != len(peer_ms):
        return []
    per_session = percentile(cas_ms, 50) * CERTS_PER_SESSION
    cores = concurrency.MACHINE_CORES
    return [Figure(
        SECTION, f"server CPU per certificate, cloister vs cfssl, {clients} "
                 f"client{'s' if clients > 1 else ''}", "ms",
        subject=Summary.of(cas_ms), baseline=Summary.of(peer_ms), baseline_name="cfssl",
        ratio=Summary.of(paired_ratios(cas_ms, peer_ms)),
        note=f"CPU seconds of the server processes per certificate during the run; "
             f"{cores} cores spent only on the CAS would serve "
             f"{cores * 1e3 / per_session:.0f} sessions/s",
        extra={"clients": clients, "sessions_per_s_of_cores": cores * 1e3 / per_session})]


def _rate_figure(name: str, runs: Sequence[Run], what: str,
                 target: Target | None = None) -> Figure:
    ms = [lat * 1e3 for r in runs for lat in r.latencies] or [0.0]
    p50, p99 = percentile(ms, 50), percentile(ms, 99)
    done = sum(len(r.latencies) for r in runs)
    failed = sum(len(r.failures) for r in runs)
    return Figure(SECTION, name, "/s", subject=Summary.of([r.rate for r in runs]),
                  target=target, target_on="value",
                  note=f"{what}; p50 {p50:.1f} ms, p99 {p99:.1f} ms, {done} done, "
                       f"{failed} failed{concurrency.cpu_note(runs)}",
                  extra={"p50_ms": p50, "p99_ms": p99, "done": done, "failed": failed,
                         **concurrency.cpu_extra(runs)})
