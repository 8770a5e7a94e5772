"""Starting the demo's services and waiting until each one answers.

Every child is a ``cloister`` command run by *this* Python interpreter, so
the measurement ``up`` puts into the flask policy (this interpreter + this
cloister runtime) is the one ``cloister run`` will present.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from cloister import errors
from cloister.demo._procs import ProcessTable, Record

#: ``python -c`` program that is the ``cloister`` console script
_CLOISTER = "import sys; from cloister.cli import main; sys.exit(main())"


def cloister_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", _CLOISTER, *args]


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without cloister/SCONE settings of the caller, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOISTER_", "SCONE_"))}
    env.update(extra)
    return env


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # the servers set SO_REUSEADDR too: a TIME_WAIT leftover is no conflict, a listener is
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(ports: Mapping[str, tuple[str, int]]) -> None:
    busy = [f"{what} port {port} ({host})" for what, (host, port) in ports.items()
            if not port_free(host, port)]
    if busy:
        raise errors.ConfigError(
            "port in use: " + ", ".join(busy),
            details=["stop what listens there (ss -ltnp shows it), or choose other ports "
                     "with --cas-port/--redis-port/--api-port"],
        )


def check_redis_server() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise errors.ConfigError(
            "redis-server is not installed (the demo runs Redis 7 with TLS from the "
            "distribution's packages)",
            details=["install it: sudo apt-get install redis-server"],
        )
    return found


def check_volume_tools() -> None:
    """Redis's data directory is an encrypted volume: gocryptfs and FUSE must be there."""
    if shutil.which("gocryptfs") is None or not os.path.exists("/dev/fuse"):
        raise errors.ConfigError(
            "gocryptfs or /dev/fuse is missing (Redis's data is kept in an encrypted volume)",
            details=["install them: sudo apt-get install gocryptfs fuse3"],
        )


def unix_open(path: Path) -> bool:
    """True when something accepts connections on the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def https_status(port: int, cadata: str, hostname: str, path: str) -> int | None:
    """The HTTP status of ``GET path`` over TLS verified as ``hostname``; None if no answer."""
    context = ssl.create_default_context(cadata=cadata)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=hostname) as tls:
            tls.sendall(f"GET {path} HTTP/1.0\r\nHost: {hostname}\r\n\r\n".encode())
            head = tls.recv(64)
    except (OSError, ssl.SSLError):
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def log_tail(path: str, lines: int = 5) -> list[str]:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def wait_until(
    table: ProcessTable, record: Record, what: str, ready: Callable[[], bool], seconds: float
) -> None:
    """Poll ``ready`` until it holds; fail clearly if the process ends or time runs out."""
    deadline = time.monotonic() + seconds
    while not ready():
        if table.exited(record):
            raise errors.LaunchError(
                f"{what} exited during start-up; see {record.log}",
                details=log_tail(record.log),
            )
        if time.monotonic() > deadline:
            raise errors.LaunchError(
                f"{what} did not become ready within {seconds:.0f}s; see {record.log}",
                details=log_tail(record.log),
            )
        time.sleep(0.1)
