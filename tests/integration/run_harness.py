"""CAS + LAS subprocesses and ``cloister run`` invocations for runtime tests."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cas_harness import CAS, CLOISTER, Identity, free_port, make_identity

from cloister.attest import report_data, simulation


class LAS:
    """A LAS on a Unix socket of its own (``tcp=True``: on a free loopback port)."""

    def __init__(self, state: Path, log: Path, tpm: str | None = None,
                 extra_args: tuple[str, ...] = (), *, tcp: bool = False,
                 socket_dir: Path | None = None) -> None:
        self.state, self.log, self.port = state, log, free_port()
        self.tpm = tpm  # a TCTI: quote with that TPM (evidence type tpm)
        self.extra_args = extra_args  # e.g. --evidence sev-snp --quoter-option tsm=DIR
        self.tcp = tcp
        self.socket = (socket_dir or state.parent) / "las.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}" if self.tcp else str(self.socket)

    def start(self) -> None:
        where = ["--listen", self.addr] if self.tcp else ["--socket", self.addr]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [CLOISTER, "las", "serve", "--state", str(self.state), *where,
                 *(["--tpm", self.tpm] if self.tpm else []), *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while subprocess.run([CLOISTER, "las", "platform-id", "--las", self.addr],
                             capture_output=True).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"LAS did not start: {self.log.read_text()}")
            time.sleep(0.1)

    def platform_id(self) -> str:
        return subprocess.run([CLOISTER, "las", "platform-id", "--las", self.addr],
                              capture_output=True, text=True, check=True).stdout.strip()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


class Platform:
    """A running CAS and LAS, and an identity to post sessions with."""

    def __init__(self, root: Path, tpm: str | None = None, *, cas_args: tuple[str, ...] = (),
                 las_args: tuple[str, ...] = (), public: Path | None = None) -> None:
        self.root = root
        self.public = public  # a directory every user may read: socket, CAS cert, programs
        self.cas = CAS(root / "cas", root / "cas.log", cas_args)
        self.las = LAS(root / "las", root / "las.log", tpm, las_args, socket_dir=public)
        self.owner: Identity = make_identity(root / "ids", "owner")

    def enroll(self, identity: Identity | None = None, platform_id: str | None = None) -> None:
        """Vouch for the LAS's platform for ``identity``'s sessions (default: the owner's)."""
        body = json.dumps({"platform_id": platform_id or self.las.platform_id()}).encode()
        reply = self.cas.curl("/v1/platforms", identity=identity or self.owner, data=body)
        assert reply.status in (200, 201), reply.body

    def create(self, session_yaml: str) -> str:
        reply = self.cas.curl("/session", identity=self.owner, data=session_yaml.encode())
        assert reply.status == 201, reply.body
        return str(reply.json()["hash"])

    def sign_as_las(self, nonce: bytes, bound_key: bytes, measurement: str | None = None, *,
                    uid: int | None = None, gid: int | None = None) -> bytes:
        """Simulation evidence signed with this LAS's own key (read from its state, as its
        host's root could): for tests of the CAS's protocol checks, not of the LAS."""
        key = simulation.load_or_create_platform_key(self.las.state)
        return simulation.sign_simulation(
            key, measurement=measurement or python_measurement(), fspf_tag=None,
            report_data_hex=report_data(nonce, bound_key).hex(),
            uid=os.getuid() if uid is None else uid, gid=os.getgid() if gid is None else gid)

    def last_refusal(self) -> str:
        """The reasons the CAS audited for its latest refused attestation (the runtime is
        only told "attestation refused")."""
        lines = (self.cas.state / "audit.log").read_text().splitlines()
        denied = [json.loads(line) for line in lines if '"attest"' in line]
        denied = [e for e in denied if e["action"] == "attest" and e["decision"] == "deny"]
        assert denied, "the CAS audited no refused attestation"
        return str(denied[-1]["reason"])

    def env(self, config_id: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOISTER_", "SCONE_"))}
        cert = self.cas.state / "cas-ca.pem"
        if self.public is not None:  # where another uid can read it
            (self.public / "cas-ca.pem").write_bytes(cert.read_bytes())
            cert = self.public / "cas-ca.pem"
        env.update({
            "CLOISTER_CAS_ADDR": f"127.0.0.1:{self.cas.port}",
            "CLOISTER_LAS_ADDR": self.las.addr,
            "CLOISTER_CAS_CERT": str(cert),
            "CLOISTER_CONFIG_ID": config_id,
            "CLOISTER_RETRY_SECONDS": "2",
        })
        env.update(extra)
        return env

    def run(self, config_id: str, *command: str, timeout: float = 60,
            **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLOISTER, "run", *command], env=self.env(config_id, **extra),
                              capture_output=True, text=True, timeout=timeout)


@contextmanager
def platform(root: Path, tpm: str | None = None, *, cas_args: tuple[str, ...] = (),
             las_args: tuple[str, ...] = (), public: Path | None = None) -> Iterator[Platform]:
    p = Platform(root, tpm, cas_args=cas_args, las_args=las_args, public=public)
    p.cas.start()
    p.las.start()
    p.enroll()
    try:
        yield p
    finally:
        p.las.stop()
        p.cas.stop()


def python_measurement() -> str:
    return subprocess.run([CLOISTER, "measure"], capture_output=True, text=True,
                          check=True).stdout.strip()
