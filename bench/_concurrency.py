"""Concurrent CAS clients: N keep-alive HTTPS clients, closed loop, for a fixed time.

The clients run as threads spread over up to ``PROCESSES`` processes (so the
client side is not one interpreter's GIL); each thread keeps one HTTPS
connection (with a client certificate) open and sends its next request as soon
as the last one is answered.  A run returns every request's latency; the rate
is requests answered per wall-clock second over the whole run.  Two kinds:

- ``session``: ``POST /v1/sessions`` of a session with a CA and a server
  certificate (two P-256 keys, two signatures), each with a fresh name;
- ``attest``: what ``cloister run`` does before a program starts — a nonce
  over the kept connection, a quote from the LAS (its own HTTP request), the
  evidence over the kept connection, the sealed configuration opened;
- ``cfssl``: the peer, ``POST /api/v1/cfssl/newcert`` to ``cfssl serve`` (a
  new P-256 key and a certificate signed by its CA), each with a fresh name.

All clients share 127.0.0.1 and one identity, so the bench starts the CAS with
its per-address limits and the per-creator session quota raised
(:data:`BENCH_LIMITS`); every other limit is the default.
Loopback only; every run ends by itself.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import multiprocessing
import os
import ssl
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench import _http1
from bench._cpu import tree_cpu_seconds
from bench._stats import Figure, Summary, Target, percentile

PROCESSES = 4
#: the concurrency levels measured
CONCURRENCY = (1, 16, 64)
#: the concurrency at which issue 20's rate targets apply
TARGET_CLIENTS = 16
#: cores of the bench machine (its CPU figures say what this many would serve)
MACHINE_CORES = os.cpu_count() or 1

#: limits the bench itself would hit: per-address ones (every client is 127.0.0.1 with
#: one identity) and the per-creator session quota (a run creates thousands)
BENCH_LIMITS = (
    "nonce_rate=1000000", "nonce_burst=1000000", "attest_rate=1000000",
    "attest_burst=1000000", "max_connections_per_address=1024",
    "max_sessions_per_creator=100000000",
)


def limit_args() -> list[str]:
    return [arg for pair in BENCH_LIMITS for arg in ("--limit", pair)]


@dataclass(frozen=True)
class Job:
    kind: str  # "session" | "attest" | "cfssl"
    cas_port: int
    cas_ca: str
    cert: str
    key: str
    seconds: float
    #: session: the YAML with a ``{name}`` placeholder; attest: the config id
    payload: str
    las_state: str = ""
    measurement: str = ""
    #: wall-clock time at which every client starts (after all processes are up)
    start_at: float = 0.0
    #: the server's process: its (and its descendants') CPU during the run is counted
    server_pid: int = 0


def make_identity(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed P-256 client certificate (the CAS identity of a bench client)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return cert_path, key_path


@functools.cache
def _context(cas_ca: str, cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cas_ca)
    ctx.load_cert_chain(cert, key)
    return ctx


class _Client:
    """One client's keep-alive connection, opened again when the server closed it."""

    def __init__(self, job: Job) -> None:
        self._job = job
        self._conn: _http1.Connection | None = None

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        if self._conn is None:
            job = self._job
            self._conn = _http1.Connection("127.0.0.1", job.cas_port,
                                           _context(job.cas_ca, job.cert, job.key))
        try:
            status, data, keep = self._conn.post(path, body, content_type)
        except OSError:
            self.close()
            raise
        if not keep:
            self.close()
        return status, data

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _post(conn: _Client, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    return conn.post(path, body, content_type)


@functools.cache
def _las_key(state: str) -> Any:
    from cloister.attest import simulation  # noqa: PLC0415 - in the client process only

    return simulation.load_or_create_platform_key(Path(state))


def _attest_once(conn: _Client, job: Job) -> str:
    """One attestation; "" when it succeeded, else why not."""
    from cloister.attest import (  # noqa: PLC0415 - in the client process only
        generate_ephemeral_key,
        open_sealed,
        public_key_bytes_of,
        report_data,
        simulation,
    )

    status, data = _post(conn, "/v1/attest/nonce", b"{}", "application/json")
    if status != 201:
        return f"nonce: HTTP {status}"
    nonce = bytes.fromhex(json.loads(data)["nonce"])
    key = generate_ephemeral_key()
    public = public_key_bytes_of(key)
    # signed with the LAS's own key from its state (as its host's root could): the LAS
    # quotes only for `cloister run` processes, and this load test is the CAS's
    evidence = simulation.sign_simulation(
        _las_key(job.las_state), measurement=job.measurement, fspf_tag=None,
        report_data_hex=report_data(nonce, public).hex(), uid=os.getuid(), gid=os.getgid())
    body = json.dumps({"config_id": job.payload, "nonce": nonce.hex(), "public_key": public.hex(),
                       "evidence": base64.b64encode(evidence).decode()}).encode()
    status, data = _post(conn, "/v1/attest/config", body, "application/json")
    if status != 200:
        return f"config: HTTP {status}"
    open_sealed(key, base64.b64decode(json.loads(data)["sealed_config"]))
    return ""


def cfssl_request(name: str) -> bytes:
    """The body of a cfssl ``newcert``: a new P-256 key and a server certificate for ``name``."""
    return json.dumps({"request": {"CN": name, "hosts": [name, "127.0.0.1"],
                                   "key": {"algo": "ecdsa", "size": 256}}}).encode()


def _cfssl_once(conn: _Client, name: str) -> str:
    status, data = _post(conn, "/api/v1/cfssl/newcert", cfssl_request(name), "application/json")
    if status != 200:
        return f"HTTP {status}"
    return "" if json.loads(data).get("success") is True else "cfssl: success false"


def _client(job: Job, tag: str, out: list[float], failures: list[str]) -> None:
    from cloister.errors import Error  # noqa: PLC0415

    conn = _Client(job)
    time.sleep(max(0.0, job.start_at - time.time()))
    deadline = job.start_at + job.seconds
    serial = 0
    while time.time() < deadline:
        serial += 1
        started = time.perf_counter()
        why = ""
        try:
            if job.kind == "session":
                status, _ = _post(conn, "/v1/sessions",
                                  job.payload.format(name=f"c-{tag}-{serial}").encode(),
                                  "application/x-yaml")
                why = "" if status == 201 else f"HTTP {status}"
            elif job.kind == "cfssl":
                why = _cfssl_once(conn, f"c-{tag}-{serial}.bench")
            else:
                why = _attest_once(conn, job)
        except OSError as exc:  # the client opens a new connection for the next request
            why = type(exc).__name__
        except Error as exc:  # the LAS refused a connection (its backlog is small)
            why = type(exc).__name__
        if why:
            failures.append(why)
        else:
            out.append(time.perf_counter() - started)
    conn.close()


def _process(job: Job, threads: int, tag: str) -> tuple[list[float], list[str], float]:
    if job.kind == "attest":
        import cloister.attest  # noqa: F401, PLC0415 - imported before the clock starts
    latencies: list[float] = []
    failures: list[str] = []
    started = [threading.Thread(target=_client, args=(job, f"{tag}-{i}", latencies, failures))
               for i in range(threads)]
    for thread in started:
        thread.start()
    time.sleep(max(0.0, job.start_at - time.time()))
    cpu_at_start = time.process_time()
    for thread in started:
        thread.join()
    return latencies, failures, time.process_time() - cpu_at_start


@dataclass(frozen=True)
class Run:
    clients: int
    rate: float
    latencies: list[float]
    #: why each failed request failed ("HTTP 503", "ConnectionResetError" …)
    failures: list[str]
    #: CPU seconds the server (``Job.server_pid`` and its descendants) used during the
    #: run; None when no server pid was given
    server_cpu: float | None = None
    #: CPU seconds the client processes used during the run
    client_cpu: float = 0.0

    def cpu_ms_per_request(self, seconds: float | None) -> float | None:
        """``seconds`` of CPU spread over the requests answered, in milliseconds."""
        if seconds is None or not self.latencies:
            return None
        return seconds / len(self.latencies) * 1e3


def run(job: Job, clients: int, tag: str) -> Run:
    """``clients`` concurrent clients doing ``job`` for ``job.seconds``."""
    processes = min(PROCESSES, clients)
    shares = [clients // processes + (1 if i < clients % processes else 0)
              for i in range(processes)]
    job = replace(job, start_at=time.time() + 5.0)  # every client starts at once, warm
    server_cpu: list[float] = []
    meter = threading.Thread(target=_meter, args=(job, server_cpu), daemon=True)
    if job.server_pid:
        meter.start()
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_process, job, share, f"{tag}-{i}")
                   for i, share in enumerate(shares)]
        results = [f.result(timeout=job.seconds + 120) for f in futures]
    if job.server_pid:
        meter.join()
    latencies = [lat for part, _, _ in results for lat in part]
    return Run(clients, len(latencies) / job.seconds, latencies,
               [why for _, part, _ in results for why in part],
               server_cpu=server_cpu[0] if server_cpu else None,
               client_cpu=sum(cpu for _, _, cpu in results))


def _meter(job: Job, out: list[float]) -> None:
    """The server's CPU seconds from the clients' start to their deadline, into ``out``."""
    time.sleep(max(0.0, job.start_at - time.time()))
    before = tree_cpu_seconds(job.server_pid)
    time.sleep(max(0.0, job.start_at + job.seconds - time.time()))
    out.append(tree_cpu_seconds(job.server_pid) - before)


def figures(section: str, what: str, runs: list[Run],
            target: Target | None = None) -> list[Figure]:
    """One line per concurrency level: the rate; latency, errors and CPU beside it.

    ``target``, if any, applies to the rate at :data:`TARGET_CLIENTS` clients.
    """
    out = []
    for r in runs:
        ms = [lat * 1e3 for lat in r.latencies] or [0.0]
        p50, p99 = percentile(ms, 50), percentile(ms, 99)
        top = Counter(r.failures).most_common(2)
        failed = f" ({', '.join(f'{n}x {why}' for why, n in top)})" if top else ""
        out.append(Figure(
            section, f"{what}, {r.clients} keep-alive client{'s' if r.clients > 1 else ''}", "/s",
            subject=Summary.of([r.rate]), target_on="value",
            target=target if r.clients == TARGET_CLIENTS else None,
            note=f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, {len(r.latencies)} done, "
                 f"{len(r.failures)} failed{failed}{cpu_note([r])}",
            extra={"clients": r.clients, "p50_ms": p50, "p99_ms": p99, "done": len(r.latencies),
                   "failed": dict(Counter(r.failures)), **cpu_extra([r])},
        ))
    return out


def cpu_per_request(runs: Sequence[Run]) -> tuple[float | None, float | None]:
    """Median CPU ms per request over ``runs``: (server, clients); None where unmetered."""
    server = [v for r in runs if (v := r.cpu_ms_per_request(r.server_cpu)) is not None]
    client = [v for r in runs if (v := r.cpu_ms_per_request(r.client_cpu)) is not None]
    return (percentile(server, 50) if server else None,
            percentile(client, 50) if client else None)


def cpu_note(runs: Sequence[Run]) -> str:
    """"; CPU per request: server X ms, clients Y ms" (server only when it was metered)."""
    server, client = cpu_per_request(runs)
    if client is None:
        return ""
    head = f"server {server:.2f} ms, " if server is not None else ""
    return f"; CPU per request: {head}clients {client:.2f} ms"


def cpu_extra(runs: Sequence[Run]) -> dict[str, float | None]:
    server, client = cpu_per_request(runs)
    return {"server_cpu_ms": server, "client_cpu_ms": client}
