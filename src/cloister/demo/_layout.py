"""Where the demo keeps everything, and the options ``cloister demo up`` takes.

Everything lives under one directory (default ``./.demo``) so that data and
sessions survive ``down``/``up``; the only exception is the Redis TLS
directory, which must be on a memory filesystem (``/dev/shm``) and is removed
by ``down``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import cloister

DEFAULT_DIR = ".demo"
CAS_PORT, REDIS_PORT, API_PORT = 8081, 6379, 4996
#: the order in which ``down`` stops processes: clients before the services they use
STOP_ORDER = ("api", "redis", "las", "cas")


@dataclass(frozen=True)
class DemoOptions:
    directory: Path = Path(DEFAULT_DIR)
    app_dir: Path | None = None
    cas_port: int = CAS_PORT
    redis_port: int = REDIS_PORT
    api_port: int = API_PORT
    #: the CAS store: ``sqlite`` (in the demo directory) or ``postgresql://…``
    store: str = "sqlite"
    #: how long each service may take to answer after it was started
    ready_seconds: float = 120.0


class Layout:
    """The paths of one demo directory (``root`` is absolute)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cas = root / "cas"
        self.las = root / "las"
        #: the demo's LAS serves here (a socket of this demo only)
        self.las_socket = root / "las.sock"
        #: what the services' own uids read (demo started as root): the CAS certificate
        self.public = root / "public"
        self.identity = root / "identity"
        self.fspf = root / "fspf"
        self.fspf_source = root / "fspf.source-sha256"
        self.redis_data = root / "redis-data"
        self.logs = root / "logs"
        self.myenv = root / "myenv"
        self.cacert = root / "cacert.pem"
        self.names_file = root / "sessions.json"

    @classmethod
    def of(cls, directory: Path) -> Layout:
        return cls(directory.expanduser().resolve())

    @property
    def cas_cert(self) -> Path:
        return self.cas / "cas-ca.pem"

    @property
    def redis_tls(self) -> Path:
        """Redis's injected files: on tmpfs, one directory per demo directory."""
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        shm = Path("/dev/shm")  # noqa: S108 - must be tmpfs; the dir is made 0700
        return shm / f"cloister-demo-{digest}"

    def session_names(self) -> tuple[str, str]:
        """(flask, redis) session names: unique per directory, chosen on first ``up``."""
        try:
            data = json.loads(self.names_file.read_text())
            return str(data["flask"]), str(data["redis"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        suffix = secrets.token_hex(4)
        names = (f"patients-flask-{suffix}", f"patients-redis-{suffix}")
        self.names_file.write_text(json.dumps({"flask": names[0], "redis": names[1]}) + "\n")
        return names


def default_app_dir() -> Path | None:
    """``examples/patients`` of the source checkout cloister runs from, or of the cwd."""
    for base in (Path(cloister.__file__).resolve().parents[2], Path.cwd()):
        candidate = base / "examples" / "patients"
        if (candidate / "rest_api.py").is_file():
            return candidate
    return None


def source_digest(src: Path) -> str:
    """SHA-256 over the names and contents of ``src``'s files (what sealing would cover)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src)
        if "__pycache__" in rel.parts or path.suffix == ".pyc":
            continue
        digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
