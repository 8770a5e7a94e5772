"""Real processes for the benchmark: CAS, LAS, redis-server, on free loopback ports.

Every process is started by the bench itself, logs to a file in the bench's
work directory, and is stopped (SIGTERM, then SIGKILL) by the
:class:`Processes` registry that started it — never by name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench._concurrency import limit_args
from cloister import errors
from cloister.attest import LasClient
from cloister.client import CASClient, connect

CLOISTER = str(Path(sys.executable).parent / "cloister")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None, log: Path,
              timeout: float = 30) -> None:
    """Until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited {proc.returncode}: {tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f}s: {tail(log)}")
        time.sleep(0.05)


def tail(log: Path, size: int = 1500) -> str:
    try:
        return log.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


class Processes:
    """The processes this bench started; :meth:`stop_all` ends exactly those."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: str | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.logs / f"{name}.log"
        with log.open("ab") as fh:
            proc = subprocess.Popen(list(argv), stdout=fh, stderr=subprocess.STDOUT,
                                    env=None if env is None else dict(env), cwd=cwd)
        self.procs.append(proc)
        return proc, log

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


class Platform:
    """A CAS and a LAS on free ports, and a client identity to post sessions with."""

    def __init__(self, root: Path, procs: Processes, cas_args: Sequence[str] = ()) -> None:
        self.root, self.procs = root, procs
        self.cas_args = tuple(cas_args)
        self.cas_port = free_port()
        self.cas_state, self.las_state = root / "cas", root / "las"
        self.identity = root / "identity"
        #: the CAS process (0 until started); its descendants are its sibling processes
        self.cas_pid = 0

    @property
    def cas_addr(self) -> str:
        return f"127.0.0.1:{self.cas_port}"

    @property
    def las_addr(self) -> str:
        return str(self.root / "las.sock")

    @property
    def cas_cert(self) -> Path:
        return self.cas_state / "cas-ca.pem"

    def start(self) -> None:
        # a replica given --init-file-seal initialises itself (one seal for every replica)
        if not (self.cas_state / "seal.json").exists() and "--init-file-seal" not in self.cas_args:
            key_file = self.cas_state.parent / "cas-master.key"
            subprocess.run([CLOISTER, "cas", "init", "--state", str(self.cas_state), "--seal",
                            "file", "--key-file", str(key_file)], check=True,
                           capture_output=True)
        cas, cas_log = self.procs.start(
            "cas", [CLOISTER, "cas", "serve", "--state", str(self.cas_state),
                    "--listen", self.cas_addr, *limit_args(), *self.cas_args])
        las, las_log = self.procs.start(
            "las", [CLOISTER, "las", "serve", "--state", str(self.las_state),
                    "--socket", self.las_addr])
        self.cas_pid = cas.pid
        wait_port(self.cas_port, cas, cas_log, timeout=60)
        deadline = time.monotonic() + 30
        while not self.cas_cert.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"CAS wrote no certificate: {tail(cas_log)}")
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        while True:
            try:
                platform_id = LasClient(self.las_addr, timeout=2).platform()["platform_id"]
                break
            except (errors.EvidenceError, errors.Unreachable):  # not answering, or no socket yet
                if las.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"LAS did not start: {tail(las_log)}") from None
                time.sleep(0.05)
        # simulation evidence counts only from a platform the sessions' owner enrolled
        self.client().request_json("POST", "/v1/platforms", json.dumps(
            {"platform_id": platform_id, "label": "bench"}).encode())

    def client(self, *, timeout: float = 30) -> CASClient:
        return connect(self.cas_addr, cas_cert=self.cas_cert, identity=self.identity,
                       timeout=timeout)

    def env(self, config_id: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for ``cloister run`` of ``config_id`` (no stray CLOISTER_/SCONE_)."""
        env = {k: v for k, v in (base or os.environ).items()
               if not k.startswith(("CLOISTER_", "SCONE_"))}
        env.update({
            "CLOISTER_CAS_ADDR": self.cas_addr,
            "CLOISTER_LAS_ADDR": self.las_addr,
            "CLOISTER_CAS_CERT": str(self.cas_cert),
            "CLOISTER_CONFIG_ID": config_id,
            "CLOISTER_RETRY_SECONDS": "5",
        })
        return env


def measure(program: str | None = None) -> str:
    argv = [CLOISTER, "measure"] + ([program] if program else [])
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def have(tool: str) -> str | None:
    """None when ``tool`` is on PATH, else the reason it is missing."""
    if shutil.which(tool) is None:
        return f"{tool} not installed (apt-get install it to include this figure)"
    return None
