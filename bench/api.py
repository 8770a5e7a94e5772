"""API and start-up: the patient service under ``cloister run`` vs the same code natively.

Set-up (all on free loopback ports): CAS + LAS; Redis launched by
``cloister run`` from the example's redis policy (TLS only, client
certificates); the example's ``rest_api.py`` sealed and launched by
``cloister run`` from its flask policy (files injected in memory); and the
*same* ``rest_api.py`` started natively by this Python, with the *same*
certificates on disk (fetched by an extra attested service in the flask
session that copies its injected files out, 0600) against the *same* Redis.
The native copy differs only in the ``/tls/`` prefix of its paths (a
directory of this run: writing /tls would break other tests' "no /tls on
disk" checks).  For the cost of TLS itself: that native copy with
``ssl=False`` and no ``ssl_context``, against a plain Redis with the same
persistence settings.

Load: :mod:`bench._load`, closed loop, keep-alive, concurrencies 1, 4, 16;
variants alternate within each round (rotating order).  Start-up: launch →
first 200 OK, ``cloister run`` vs native, alternating; the breakdown comes
from `cloister --verbose run`'s own step times.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

from bench import _load
from bench._context import Context
from bench._procs import CLOISTER, Platform, free_port, have, measure, wait_port
from bench._stats import Figure, Target, absolute, compared, median, percentile, skipped
from cloister import fspf
from cloister.policy import substitute_variables
from cloister.runtime._volumes import unmount

SECTION = "api"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "patients"
TLS_FILES = ("redis-ca.crt", "client.crt", "client.key", "flask.crt", "flask.key")
DUMP = """\
import os, sys
for name in {files!r}:
    with open("/tls/" + name, "rb") as src:
        data = src.read()
    fd = os.open(os.path.join(sys.argv[1], name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
"""
PLAIN_PATCHES = (("ssl=True,", "ssl=False,"),
                 ('ssl_context=("/tls/flask.crt", "/tls/flask.key")', "ssl_context=None"))


class Setup:
    """Everything the API figures need, started by :meth:`start`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.root = ctx.dir("api")
        self.plat = Platform(self.root, ctx.procs)
        # a memory filesystem: the redis policy refuses to inject onto a disk
        self.shm = Path("/dev/shm") / f"cloister-bench-{os.getpid()}"  # noqa: S108
        self.redis_port, self.api_port = free_port(), free_port()
        self.native_port, self.plain_port, self.plain_redis_port = (free_port(), free_port(),
                                                                    free_port())
        self.certs = self.root / "native-tls"
        self.notes: list[str] = []
        self.plain_ok = True
        self.apps: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        ctx, plat = self.ctx, self.plat
        plat.start()
        app_src = self.root / "app-src"
        app_src.mkdir()
        shutil.copy(EXAMPLE / "rest_api.py", app_src / "rest_api.py")
        sealed = fspf.seal(str(app_src), str(self.root / "app-sealed"))
        self.fspf_path = sealed.fspf_path
        data_dir = self.root / "redis-data"
        data_dir.mkdir()
        self.shm.mkdir(mode=0o700)
        variables = {
            "REDIS_SESSION": "bench-redis", "FLASK_SESSION": "bench-flask",
            "MRENCLAVE": measure(), "MRENCLAVE_REDIS": measure("redis-server"),
            "API_DIR": str(self.root / "app-sealed"), "API_PORT": str(self.api_port),
            "REDIS_PORT": str(self.redis_port), "REDIS_TLS_DIR": str(self.shm),
            "REDIS_DATA_DIR": str(data_dir), "SCONE_FSPF_PATH": sealed.fspf_path,
            "SCONE_FSPF_KEY": sealed.key_hex, "SCONE_FSPF_TAG": sealed.tag_hex,
            "REDIS_UID": str(os.getuid()), "REDIS_GID": str(os.getgid()),
            "API_UID": str(os.getuid()), "API_GID": str(os.getgid()),
        }
        client = plat.client()
        redis_text = (EXAMPLE / "policies" / "redis.yml").read_text()
        client.create_session(substitute_variables(redis_text, variables))
        flask_text = substitute_variables((EXAMPLE / "policies" / "flask.yml").read_text(),
                                          variables)
        dump = self.root / "dump_tls.py"
        dump.write_text(DUMP.format(files=TLS_FILES))
        self.certs.mkdir(mode=0o700)
        extra = (f"   - name: bench_dump\n     image_name: flask_restapi_image\n"
                 f"     mrenclaves: [{variables['MRENCLAVE']}]\n"
                 f"     command: python3 {dump} {self.certs}\n     pwd: /\n")
        if "\nservices:\n" not in flask_text:
            raise RuntimeError("flask.yml has no top-level 'services:' line to add to")
        client.create_session(flask_text.replace("\nservices:\n", "\nservices:\n" + extra, 1))
        ca = client.public_values("bench-flask")["api_ca_cert"]["value"]
        self.tls = ssl.create_default_context(cadata=ca)
        ctx.say("api: starting Redis under cloister run, copying the certificates out")
        redis, redis_log = ctx.procs.start(
            "redis", [CLOISTER, "run", "--", "redis-server"], plat.env("bench-redis/redis"))
        wait_port(self.redis_port, redis, redis_log)
        done = subprocess.run([CLOISTER, "run"], env=plat.env("bench-flask/bench_dump"),
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the certificate copier failed: {done.stderr.strip()[-300:]}")
        source = (EXAMPLE / "rest_api.py").read_text()
        native = self.root / "native" / "rest_api.py"
        native.parent.mkdir()
        native.write_text(source.replace("/tls/", f"{self.certs}/"))
        plain_source = source
        for old, new in PLAIN_PATCHES:
            if old not in plain_source:
                self.plain_ok = False
                self.notes.append(f"no plain-HTTP variant: rest_api.py has no {old!r}")
            plain_source = plain_source.replace(old, new)
        if self.plain_ok:
            plain = self.root / "plain" / "rest_api.py"
            plain.parent.mkdir()
            plain.write_text(plain_source)
            self.plain_app = plain
            redis_plain, log = ctx.procs.start("redis-plain", [
                "redis-server", "--port", str(self.plain_redis_port), "--bind", "127.0.0.1",
                "--appendonly", "yes", "--dir", str(self.root / "redis-plain"),
                "--protected-mode", "no"])
            (self.root / "redis-plain").mkdir(exist_ok=True)
            wait_port(self.plain_redis_port, redis_plain, log)
        self.native_app = native

    def native_env(self, port: int, redis_port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOISTER_", "SCONE_"))}
        env.update({"REDIS_HOST": "localhost", "REDIS_PORT": str(redis_port),
                    "API_PORT": str(port)})
        return env

    def launch(self, which: str, name: str | None = None) -> tuple[subprocess.Popen[bytes], float]:
        """Start one variant; returns the process and time.perf_counter() at launch."""
        env: dict[str, str]
        if which == "cloister":
            argv, env = [CLOISTER, "run"], self.plat.env("bench-flask/flask_restapi")
            env["CLOISTER_FSPF_PATH"] = self.fspf_path
        elif which == "probe":  # the real cloister run, its step times in its debug log
            argv, env = [CLOISTER, "--verbose", "run"], self.plat.env("bench-flask/flask_restapi")
            env["CLOISTER_FSPF_PATH"] = self.fspf_path
        elif which == "native":
            argv, env = ([sys.executable, str(self.native_app)],
                         self.native_env(self.native_port, self.redis_port))
        else:
            argv, env = ([sys.executable, str(self.plain_app)],
                         self.native_env(self.plain_port, self.plain_redis_port))
        launched = time.perf_counter()
        proc, _ = self.ctx.procs.start(name or which, argv, env, cwd="/")
        self.apps.append(proc)
        return proc, launched

    def stop_apps(self) -> None:
        for proc in self.apps:
            self.ctx.procs.stop(proc)
        self.apps.clear()

    def target(self, which: str) -> _load.Target:
        if which == "plain":
            return _load.Target(self.plain_port)
        port = self.api_port if which in ("cloister", "probe") else self.native_port
        return _load.Target(port, self.tls)

    def cleanup(self) -> None:
        shutil.rmtree(self.shm, ignore_errors=True)
        unmount(str(self.root / "redis-data"))  # Redis's encrypted volume (the policy's)


def run(ctx: Context) -> list[Figure]:
    if not (EXAMPLE / "rest_api.py").exists() or not (EXAMPLE / "policies").is_dir():
        return [skipped(SECTION, "(section)", f"{EXAMPLE} has no rest_api.py and policies yet")]
    if reason := have("redis-server"):
        return [skipped(SECTION, "(section)", reason)]
    setup = Setup(ctx)
    try:
        setup.start()
        figures = _throughput(ctx, setup)
        setup.stop_apps()  # Redis and the platform stay for the start-up rounds
        figures += _startup(ctx, setup)
        return figures
    finally:
        ctx.procs.stop_all()
        setup.cleanup()


def _throughput(ctx: Context, setup: Setup) -> list[Figure]:
    variants = ["native", "cloister"] + (["plain"] if setup.plain_ok else [])
    for which in variants:
        proc, _ = setup.launch(which)
        _wait_for_port(setup, which, proc)
        _load.run_load(setup.target(which), 4, ctx.pick(1.0, 0.5), 10_000, f"warm-{which}")
    rounds, seconds = ctx.pick(3, 2), ctx.pick(2.5, 1.0)
    figures: list[Figure] = []
    serial = 0
    for conc in (1, 4, 16):
        ctx.say(f"api: concurrency {conc}: {rounds} rounds x {', '.join(variants)}, "
                f"{seconds}s each")
        got: dict[str, list[_load.Result]] = {v: [] for v in variants}
        for r in range(rounds):
            shift = r % len(variants)
            for which in variants[shift:] + variants[:shift]:
                serial += 1
                got[which].append(_load.run_load(setup.target(which), conc, seconds, 200_000,
                                                 f"r{serial}"))
        rate = {v: [g.rate for g in got[v]] for v in variants}
        p50 = {v: [median(g.latencies_ms) for g in got[v]] for v in variants}
        p99 = {v: [percentile(g.latencies_ms, 99) for g in got[v]] for v in variants}
        errors = {v: sum(g.errors for g in got[v]) for v in variants}
        total = {v: sum(len(g.latencies_ms) for g in got[v]) for v in variants}
        note = (f"{total['cloister']} requests under cloister run, {total['native']} native; "
                f"non-2xx: {errors['cloister']} / {errors['native']}; mix 1 POST : 2 GET : "
                "1 score, keep-alive HTTPS, mutual-TLS Redis")
        figures += [
            compared(SECTION, f"c={conc} throughput cloister run vs native", "req/s",
                     rate["cloister"], rate["native"], "native", target=Target(">=", 0.95),
                     note=note),
            compared(SECTION, f"c={conc} p50 latency", "ms", p50["cloister"], p50["native"],
                     "native", target=Target("<=", 1.05)),
            compared(SECTION, f"c={conc} p99 latency", "ms", p99["cloister"], p99["native"],
                     "native", target=Target("<=", 1.15)),
        ]
        if "plain" in variants:
            figures.append(compared(
                SECTION, f"c={conc} TLS cost: native HTTPS+TLS Redis vs plain", "req/s",
                rate["native"], rate["plain"], "plain HTTP + plain Redis",
                note="context: the same app natively, plain HTTP and a plain Redis"
                if conc == 1 else ""))
    if not setup.plain_ok:
        figures.append(skipped(SECTION, "TLS cost", "; ".join(setup.notes)))
    return figures


def _first_answer(setup: Setup, which: str, proc: subprocess.Popen[bytes],
                  path: str = "/patient/bench-startup") -> float:
    """time.perf_counter() of the first 200 from ``which`` (the record exists in both Redis)."""
    deadline = time.perf_counter() + 60
    while True:
        if proc.poll() is not None:
            log = setup.ctx.procs.logs / f"{which}.log"
            raise RuntimeError(f"{which} exited {proc.returncode}: "
                               f"{log.read_text(errors='replace')[-400:] if log.exists() else ''}")
        try:
            return _load.first_ok(setup.target(which), path, timeout=0.5)
        except RuntimeError:
            if time.perf_counter() > deadline:
                raise


def _startup(ctx: Context, setup: Setup) -> list[Figure]:
    # a record both variants can answer 200 for
    for which in ("native", "plain") if setup.plain_ok else ("native",):
        proc, _ = setup.launch(which)
        _wait_for_port(setup, which, proc)
        conn = setup.target(which).connection()
        _load.one(conn, "POST", "/patient/bench-startup", _load.record_body("bench-startup"))
        conn.close()
        ctx.procs.stop(proc)
    rounds = ctx.pick(5, 2)
    ctx.say(f"api: start-up, {rounds} rounds of cloister run and native, then the breakdown")
    times: dict[str, list[float]] = {"cloister": [], "native": []}
    for r in range(rounds):
        for which in (("native", "cloister") if r % 2 == 0 else ("cloister", "native")):
            proc, launched = setup.launch(which)
            ok = _first_answer(setup, which, proc)
            times[which].append((ok - launched) * 1e3)
            ctx.procs.stop(proc)
    parts: dict[str, list[float]] = {}
    for _ in range(ctx.pick(3, 1)):
        log = ctx.procs.logs / "probe.log"
        seen = log.read_text() if log.exists() else ""
        proc, launched = setup.launch("probe")
        ok = _first_answer(setup, "probe", proc)
        ctx.procs.stop(proc)
        total = (ok - launched) * 1e3
        found = _STEP_LOG.findall(log.read_text()[len(seen):])
        if not found:
            raise RuntimeError("cloister run --verbose logged no attestation step times")
        nonce, quote, decision = (float(v) for v in found[-1])
        steps = {
            "attestation (nonce + LAS measures and quotes)": nonce + quote,
            "config (decision + unseal)": decision,
            "the rest (interpreter, isolated restart, tree, imports, app) to first 200":
                total - nonce - quote - decision,
        }
        for k, v in steps.items():
            parts.setdefault(k, []).append(v)
    figures = [compared(SECTION, "start-up: launch to first 200 OK", "ms", times["cloister"],
                        times["native"], "native", target=Target("<=", 1.5),
                        note="real `cloister run` (attest, sealed code, injected files) vs "
                             "`python rest_api.py`; alternating rounds")]
    figures += [absolute(SECTION, f"start-up part: {k}", "ms", v,
                         note="from `cloister --verbose run`'s own step times" if i == 0
                         else "")
                for i, (k, v) in enumerate(parts.items())]
    return figures


#: the runtime's debug line with its step times (cloister.runtime.run)
_STEP_LOG = re.compile(r"nonce ([0-9.]+) ms, quote ([0-9.]+) ms, decision ([0-9.]+) ms")


def _wait_for_port(setup: Setup, which: str, proc: subprocess.Popen[bytes]) -> None:
    port = setup.target(which).port
    wait_port(port, proc, setup.ctx.procs.logs / f"{which}.log", timeout=60)
