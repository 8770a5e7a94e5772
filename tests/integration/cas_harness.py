"""A real ``cloister cas serve`` subprocess on a free port, driven with curl and openssl."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CLOISTER = str(Path(sys.executable).parent / "cloister")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Identity:
    cert: Path
    key: Path

    def key_hash(self) -> str:
        """What the issue says a caller's identity is, computed with openssl only."""
        out = subprocess.run(
            f"openssl x509 -in {self.cert} -pubkey -noout | openssl pkey -pubin -outform der"
            " | sha256sum",
            shell=True, check=True, capture_output=True, text=True,
        ).stdout
        return out.split()[0]


def make_identity(directory: Path, name: str) -> Identity:
    """A self-signed client certificate made with ``openssl req -x509``, as SCONE users do."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", f"/CN={name}"],
        check=True, capture_output=True,
    )
    return Identity(cert, key)


@dataclass
class Reply:
    status: int
    body: bytes

    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.body)


def init_state(state: Path, *seal_args: str) -> str:
    """``cloister cas init`` (default: the file seal, its key beside the state directory);
    its stdout (the shamir shares)."""
    args = seal_args or ("--seal", "file", "--key-file", str(key_file_of(state)))
    done = subprocess.run([CLOISTER, "cas", "init", "--state", str(state), *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cas init failed: {done.stderr}")
    return done.stdout


def key_file_of(state: Path) -> Path:
    """Where the harness keeps a file seal's key: outside the state directory."""
    return state.parent / f"{state.name}-master.key"


class CAS:
    def __init__(self, state: Path, log: Path, extra_args: tuple[str, ...] = (),
                 *, seal_args: tuple[str, ...] = (), wait_ready: bool = True,
                 init: bool = True) -> None:
        self.state = state
        self.log = log
        self.port = free_port()
        self.extra_args = extra_args
        #: ``cloister cas init`` arguments used on a state directory not initialised yet
        self.seal_args = seal_args
        #: False: start() runs no ``cloister cas init`` (``cas serve --init-file-seal`` does)
        self.init = init
        #: wait for /healthz 200 in start() (False: a sealed CAS, wait for its 503)
        self.wait_ready = wait_ready
        self.init_output = ""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"https://localhost:{self.port}"

    def start(self) -> None:
        if self.init and not (self.state / "seal.json").exists() \
                and not (self.state / "master.key").exists():
            self.init_output = init_state(self.state, *self.seal_args)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [CLOISTER, "cas", "serve", "--state", str(self.state),
                 "--listen", f"127.0.0.1:{self.port}", *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"CAS exited {self.proc.returncode}: {self.log.read_text()}")
            if (self.state / "cas-ca.pem").exists():
                try:
                    if self.curl("/healthz").status == (200 if self.wait_ready else 503):
                        return
                except subprocess.CalledProcessError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"CAS did not become ready: {self.log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit status (None if it was not running)."""
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(timeout=30)
        self.proc = None
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def curl(
        self,
        path: str,
        *,
        identity: Identity | None = None,
        data: bytes | None = None,
        extra: tuple[str, ...] = (),
        insecure: bool = False,
    ) -> Reply:
        """One request with curl; ``--cacert`` pins the CAS CA unless ``insecure``."""
        args = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}"]
        args += ["-k"] if insecure else ["--cacert", str(self.state / "cas-ca.pem")]
        if identity is not None:
            args += ["--cert", str(identity.cert), "--key", str(identity.key)]
        if data is not None:
            args += ["--data-binary", "@-", "-H", "Content-Type: application/x-yaml"]
        args += [*extra, self.base + path]
        out = subprocess.run(args, input=data, capture_output=True, check=True).stdout
        body, _, status = out.rpartition(b"\n")
        return Reply(int(status), body)


# a session with a generated CA (exported) and a password: the stores' and faults' workhorse
CA_SESSION = """\
name: {name}
version: "0.3"
secrets:
  - name: ca_key
    kind: private-key
  - name: ca
    kind: x509-ca
    private_key: ca_key
    export_public: true
  - name: pw
    kind: ascii
"""
