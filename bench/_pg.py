"""A throwaway PostgreSQL cluster: Debian's ``initdb``/``pg_ctl`` in a temporary directory.

Used by the tests (``tests/pg_harness.py``) and by the bench.  The cluster runs
as an unprivileged user (``nobody`` when started by root: PostgreSQL refuses to
run as root), listens on a free loopback port and on a socket in its own
directory, with ``fsync`` and ``synchronous_commit`` on — the durability the
CAS documents it needs.  :func:`running_cluster` starts one and removes it.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench._procs import free_port

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
_RUN_AS = "nobody"


def pg_bin() -> Path | None:
    """Directory holding ``initdb``/``pg_ctl`` (the newest Debian version), or None."""
    for directory in PG_BIN_DIRS:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def unavailable() -> str | None:
    """Why a real PostgreSQL cannot run here, or None."""
    if pg_bin() is None:
        return "PostgreSQL is not installed (apt-get install postgresql; .ci/run does)"
    try:
        import psycopg  # noqa: F401, PLC0415
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_RUN_AS)
        except KeyError:
            return f"running as root and there is no unprivileged user {_RUN_AS!r} to run postgres"
    return None


class PostgresCluster:
    """One ``postgres`` process on a free port; :meth:`stop`/:meth:`start` for outage tests."""

    _counter = itertools.count()

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.sock = root / "sock"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.user = "cloister"
        self.bin = pg_bin()
        assert self.bin is not None
        self._proc: subprocess.Popen[bytes] | None = None

    def _as_owner(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        if os.geteuid() == 0:
            argv = ["setpriv", f"--reuid={_RUN_AS}", "--regid=nogroup", "--clear-groups", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=120,
                              cwd=self.root)

    def init(self) -> None:
        self.sock.mkdir()
        if os.geteuid() == 0:
            entry = pwd.getpwnam(_RUN_AS)
            for path in (self.root, self.sock):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._as_owner([str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user,
                        "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"])
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.sock}'\n"
                "fsync = on\nsynchronous_commit = on\nmax_connections = 120\n"
                "shared_buffers = 16MB\n"
            )

    def start(self) -> None:
        """Run ``postgres`` as a child of this process (not daemonized by pg_ctl), told by
        the kernel to stop when this process dies (``--pdeathsig``): a test run that is
        killed leaves no cluster behind."""
        argv = [str(self.bin / "postgres"), "-D", str(self.data)]
        if os.geteuid() == 0:
            argv = ["setpriv", "--pdeathsig", "INT", f"--reuid={_RUN_AS}", "--regid=nogroup",
                    "--clear-groups", *argv]
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                          cwd=self.root)
        deadline = time.monotonic() + 60
        while self._as_owner([str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p",
                              str(self.port)], check=False).returncode != 0:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (clients disconnected, clean shutdown) or ``immediate``; waits for it."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT if mode == "fast" else signal.SIGQUIT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def psql(self, database: str, sql: str) -> str:
        """Run ``sql`` with Debian's psql (as a DBA would); its stdout."""
        done = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
             "-d", self.url(database), "-c", sql],
            check=False, capture_output=True, text=True, timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def new_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; its name."""
        name = f"{prefix}_{os.getpid()}_{next(self._counter)}"
        self.psql("postgres", f'CREATE DATABASE "{name}"')
        return name


@contextmanager
def running_cluster() -> Iterator[PostgresCluster]:
    """A started cluster, stopped and removed afterwards (RuntimeError if it cannot run)."""
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    # not under a 0700 root-owned directory: the postgres user must be able to enter it
    root = Path(tempfile.mkdtemp(prefix="cloister-pg-"))
    os.chmod(root, 0o755)  # noqa: S103 — it holds no secret; the data dir is 0700
    cluster = PostgresCluster(root)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
