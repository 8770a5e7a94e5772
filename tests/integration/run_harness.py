"""CAS + LAS subprocesses and ``cloister run`` invocations for runtime tests."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cas_harness import CAS, CLOISTER, Identity, free_port, make_identity


class LAS:
    def __init__(self, state: Path, log: Path, tpm: str | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.state, self.log, self.port = state, log, free_port()
        self.tpm = tpm  # a TCTI: quote with that TPM (evidence type tpm)
        self.extra_args = extra_args  # e.g. --evidence sev-snp --quoter-option tsm=DIR
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [CLOISTER, "las", "serve", "--state", str(self.state), "--listen", self.addr,
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
                 las_args: tuple[str, ...] = ()) -> None:
        self.root = root
        self.cas = CAS(root / "cas", root / "cas.log", cas_args)
        self.las = LAS(root / "las", root / "las.log", tpm, las_args)
        self.owner: Identity = make_identity(root / "ids", "owner")

    def create(self, session_yaml: str) -> str:
        reply = self.cas.curl("/session", identity=self.owner, data=session_yaml.encode())
        assert reply.status == 201, reply.body
        return str(reply.json()["hash"])

    def env(self, config_id: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOISTER_", "SCONE_"))}
        env.update({
            "CLOISTER_CAS_ADDR": f"127.0.0.1:{self.cas.port}",
            "CLOISTER_LAS_ADDR": self.las.addr,
            "CLOISTER_CAS_CERT": str(self.cas.state / "cas-ca.pem"),
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
             las_args: tuple[str, ...] = ()) -> Iterator[Platform]:
    p = Platform(root, tpm, cas_args=cas_args, las_args=las_args)
    p.cas.start()
    p.las.start()
    try:
        yield p
    finally:
        p.las.stop()
        p.cas.stop()


def python_measurement() -> str:
    return subprocess.run([CLOISTER, "measure"], capture_output=True, text=True,
                          check=True).stdout.strip()
