"""A process of the servers' own uid cannot read the CAS's or the LAS's memory.

The CAS holds the master key, the data key and (issue 20's release cache) decoded
secrets; the LAS its platform key.  Both run here as uid 65534, the CAS with
``--processes 2`` (its second process is exec'd, which makes a process dumpable
again); the attacker is a second process of uid 65534 that tries ``/proc/PID/mem``,
``environ``, ``maps`` and ``PTRACE_SEIZE`` on each of them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_harness import INTEGRATION

from cas_harness import free_port  # isort: skip - on sys.path through fault_harness

from support import every_uid_python

assert INTEGRATION.is_dir()
NOBODY = 65534
AS_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
_PROBE = """
import ctypes, json, os, sys
PTRACE_SEIZE = 0x4206
out = {}
for pid in sys.argv[1:]:
    seen = {}
    for name in ("mem", "environ", "maps"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as f:
                f.read(1)
            seen[name] = "read"
        except OSError as err:
            seen[name] = err.strerror
    libc = ctypes.CDLL(None, use_errno=True)
    seen["ptrace"] = "attached" if libc.ptrace(PTRACE_SEIZE, int(pid), None, None) == 0 else \\
        os.strerror(ctypes.get_errno())
    out[pid] = seen
print(json.dumps(out))
"""
REFUSED = {"mem": "Permission denied", "environ": "Permission denied",
           "maps": "Permission denied", "ptrace": "Operation not permitted"}


@pytest.fixture
def home() -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("attacks as another uid need root and setpriv (util-linux)")
    path = Path(tempfile.mkdtemp(prefix="cloister-server-memory-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _as_nobody(python: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*AS_NOBODY, python, "-m", "cloister.cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if entry.isdigit() and int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            found.append(int(entry))
    return found


def test_the_servers_own_uid_cannot_read_or_trace_the_cas_or_the_las(home: Path) -> None:
    python = every_uid_python(home / "venv")
    data = home / "data"
    data.mkdir(mode=0o700)
    os.chown(data, NOBODY, NOBODY)
    init = subprocess.run([*AS_NOBODY, python, "-m", "cloister.cli", "cas", "init", "--state",
                           str(data / "cas"), "--seal", "file", "--key-file",
                           str(data / "master.key")], capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    port = free_port()
    cas = _as_nobody(python, "cas", "serve", "--state", str(data / "cas"), "--listen",
                     f"127.0.0.1:{port}", "--master-key-file", str(data / "master.key"),
                     "--processes", "2")
    las = _as_nobody(python, "las", "serve", "--state", str(data / "las"), "--socket",
                     str(data / "las.sock"))
    try:
        deadline = time.monotonic() + 90
        while not ((data / "las.sock").exists() and len(_children(cas.pid)) >= 1
                   and _healthy(port)):
            assert cas.poll() is None and las.poll() is None, "a server exited"
            assert time.monotonic() < deadline, "the CAS or the LAS did not start"
            time.sleep(0.2)
        pids = [cas.pid, *_children(cas.pid), las.pid]
        # a process is dumpable from its exec until its prctl (as `cloister run` is, see
        # the README's limits): give a just-started one until the deadline to get there;
        # one that never does is seen below
        while not all(_sealed_off(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        attacker = subprocess.run([*AS_NOBODY, python, "-c", textwrap.dedent(_PROBE),
                                   *map(str, pids)], capture_output=True, text=True, timeout=60)
        seen = json.loads(attacker.stdout)
        # each server cleared PR_SET_DUMPABLE before it read a key: the kernel refuses
        # the same uid everything
        assert seen == {str(pid): REFUSED for pid in pids}, seen
    finally:
        for proc in (cas, las):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _sealed_off(pid: int) -> bool:
    """The kernel hands a non-dumpable process's /proc files to root."""
    return Path(f"/proc/{pid}/environ").stat().st_uid == 0


def _healthy(port: int) -> bool:
    done = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                           f"https://127.0.0.1:{port}/healthz"], capture_output=True, text=True,
                          timeout=10)
    return done.stdout == "200"
