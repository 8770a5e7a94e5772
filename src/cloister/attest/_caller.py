"""Who is on the other end of the LAS's socket, and what the kernel says it runs.

The LAS never takes a workload's word for what it is (as SPIRE's unix
workload attestor): it asks the kernel.

1. **Identify.**  On a Unix socket, ``SO_PEERPIDFD`` (Linux ≥ 6.5) gives a
   pidfd of the very process that connected; otherwise ``SO_PEERCRED``'s pid
   is opened with ``pidfd_open`` and its start time must precede the
   connection, so a process that reused the PID of one that already left
   cannot stand in.  On loopback TCP (simulation only) the peer socket's
   owner is found in ``/proc/net/tcp{,6}`` and ``/proc/*/fd``.  The uid and
   gid are the kernel's (``SO_PEERCRED`` / the socket's owner).
2. **Inspect.**  ``/proc/PID/{exe,cmdline,environ,status,maps}`` are read;
   then the pidfd must still be live, so everything read belongs to that
   one process.
3. **Refuse what can carry foreign code** (every reason collected):
   ``LD_PRELOAD``, ``LD_AUDIT``, ``LD_LIBRARY_PATH``; for a Python
   interpreter any ``PYTHON*`` variable; a tracer attached; real, effective
   or saved uids or gids differing from the connection's; an executable
   mapping of a file that is deleted, not a regular file, or writable by
   anyone but root and the caller's own user; and, for a Python
   interpreter, anything but ``python -I -m cloister.cli run`` (isolated
   mode, cloister's own runtime).

Reading another user's ``/proc/PID`` (or a non-dumpable process's) needs
``CAP_SYS_PTRACE``: a LAS that serves other users runs as root.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from cloister import errors
from cloister.attest._las_client import CALLER_NOT_MEASURABLE

SO_PEERPIDFD = 77
#: the one form of a Python caller the LAS quotes for (``cloister run`` re-execs itself so)
RUNTIME_ARGV = (("-I", "-m", "cloister.cli", "run"), ("-I", "-m", "cloister", "run"))
_FORBIDDEN_ENV = ("LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH")


class CallerNotMeasurable(errors.EvidenceError):
    """The LAS may not read the caller's ``/proc`` entries (another user, or non-dumpable)."""

    code = CALLER_NOT_MEASURABLE


@dataclass(frozen=True)
class Peer:
    """A connected caller held by a pidfd (close it with :meth:`close`)."""

    pid: int
    uid: int
    gid: int
    pidfd: int

    def alive(self) -> bool:
        try:
            signal.pidfd_send_signal(self.pidfd, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, but another user's: existence is what we ask
            return True
        return True

    def close(self) -> None:
        os.close(self.pidfd)


@dataclass(frozen=True)
class Mapping:
    """One file-backed line of ``/proc/PID/maps``."""

    path: str
    executable: bool
    device: int
    inode: int


@dataclass(frozen=True)
class Process:
    """What the kernel reported about a caller (step 2)."""

    peer: Peer
    exe: str
    argv: tuple[str, ...]
    env_names: frozenset[str]
    tracer: int
    ids: tuple[tuple[int, ...], tuple[int, ...]]
    maps: tuple[Mapping, ...] = field(default=())

    @property
    def root(self) -> str:
        """The caller's view of the filesystem (its mount namespace and chroot)."""
        return f"/proc/{self.peer.pid}/root"

    def path(self, inside: str) -> str:
        """A path as the caller sees it, reachable from the LAS."""
        return self.root + "/" + inside.lstrip("/")


def _boot_ticks() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK")


def _start_ticks(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2:].split()[19])  # field 22 of stat


def _pid_of_pidfd(pidfd: int) -> int:
    for line in Path(f"/proc/self/fdinfo/{pidfd}").read_text().splitlines():
        if line.startswith("Pid:"):
            return int(line.split()[1])
    raise errors.EvidenceError("the kernel gave no pid for the caller's pidfd")


def _hold(pid: int, uid: int, gid: int, connected_at: float) -> Peer:
    """A pidfd of ``pid``, refused if that pid now names a process younger than the connection."""
    try:
        pidfd = os.pidfd_open(pid)
        started = _start_ticks(pid)
    except (ProcessLookupError, FileNotFoundError):
        raise errors.EvidenceError("the caller left before it could be measured") from None
    if started > connected_at:
        os.close(pidfd)
        raise errors.EvidenceError(f"pid {pid} was reused by another process after connecting")
    return Peer(pid, uid, gid, pidfd)


def unix_peer(sock: socket.socket) -> Peer:
    """The caller on a connected Unix socket (step 1)."""
    connected_at = _boot_ticks()
    pid, uid, gid = struct.unpack("3i", sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    try:
        pidfd = sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError:  # older kernel: hold the pid, checking its age
        return _hold(pid, uid, gid, connected_at)
    if _pid_of_pidfd(pidfd) != pid:
        os.close(pidfd)
        raise errors.EvidenceError("the caller left before it could be measured")
    return Peer(pid, uid, gid, pidfd)


def _tcp_hex(address: tuple[str, int], family: int) -> str:
    packed = socket.inet_pton(family, address[0].split("%", 1)[0])
    # /proc/net/tcp prints each 32-bit word of the address in host (little-endian) order
    words = "".join(f"{w:08X}" for w in struct.unpack(f"<{len(packed) // 4}I", packed))
    return f"{words}:{address[1]:04X}"


def tcp_peer(sock: socket.socket) -> Peer:
    """The caller on a loopback TCP connection: the owner of the peer's socket (step 1)."""
    connected_at = _boot_ticks()
    family = sock.family
    peer_hex = _tcp_hex(sock.getpeername()[:2], family)
    ours_hex = _tcp_hex(sock.getsockname()[:2], family)
    table = "/proc/net/tcp6" if family == socket.AF_INET6 else "/proc/net/tcp"
    found = None
    for line in Path(table).read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == peer_hex and fields[2] == ours_hex:
            found = (int(fields[7]), int(fields[9]))
            break
    if found is None:
        raise errors.EvidenceError("the caller's socket is not in this network namespace")
    uid, inode = found
    target = f"socket:[{inode}]"
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.scandir(f"/proc/{entry.name}/fd")
            with fds:
                if any(_readlink(fd.path) == target for fd in fds):
                    gid = os.stat(f"/proc/{entry.name}").st_gid
                    return _hold(int(entry.name), uid, gid, connected_at)
        except OSError:
            continue
    raise CallerNotMeasurable(
        f"no process this LAS may inspect holds the caller's socket (uid {uid})",
        details=["run the LAS as root, or use its Unix socket"],
    )


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _parse_maps(text: str) -> tuple[Mapping, ...]:
    found = []
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        major, _, minor = parts[3].partition(":")
        found.append(Mapping(parts[5], "x" in parts[1],
                             os.makedev(int(major, 16), int(minor, 16)), int(parts[4])))
    return tuple(found)


def _ids(status: str, key: str) -> tuple[int, ...]:
    for line in status.splitlines():
        if line.startswith(key + ":"):
            return tuple(int(v) for v in line.split()[1:])
    return ()


def inspect(peer: Peer) -> Process:
    """Read what the kernel says ``peer`` runs (step 2)."""
    base = f"/proc/{peer.pid}"
    try:
        exe = os.readlink(f"{base}/exe")
        argv = Path(f"{base}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"{base}/environ").read_bytes().split(b"\0")
        status = Path(f"{base}/status").read_text()
        maps = Path(f"{base}/maps").read_text()
    except PermissionError:
        raise CallerNotMeasurable(
            f"this LAS (uid {os.geteuid()}) may not inspect its caller (pid {peer.pid}, "
            f"uid {peer.uid})",
            details=["run the LAS as root to serve other users, or let the caller be "
                     "inspected (cloister run does so for a LAS of its own user)"],
        ) from None
    except (FileNotFoundError, ProcessLookupError):
        raise errors.EvidenceError("the caller left before it could be measured") from None
    if not peer.alive():
        raise errors.EvidenceError("the caller left while it was being measured")
    tracer = next((int(line.split()[1]) for line in status.splitlines()
                   if line.startswith("TracerPid:")), 0)
    return Process(
        peer=peer, exe=exe,
        argv=tuple(a.decode("utf-8", "surrogateescape") for a in argv[:-1]),
        env_names=frozenset(e.split(b"=", 1)[0].decode("utf-8", "surrogateescape")
                            for e in environ if e),
        tracer=tracer, ids=(_ids(status, "Uid"), _ids(status, "Gid")),
        maps=_parse_maps(maps),
    )


def _mapping_problem(proc: Process, mapping: Mapping) -> str | None:
    if mapping.path.endswith(" (deleted)"):
        return f"it runs code from a deleted file {mapping.path}"
    try:
        info = os.stat(proc.path(mapping.path))
    except OSError:
        return f"it runs code from {mapping.path}, which the LAS cannot find"
    if (info.st_dev, info.st_ino) != (mapping.device, mapping.inode):
        return f"it runs code from a file that {mapping.path} no longer is"
    if not stat.S_ISREG(info.st_mode):
        return f"it runs code from {mapping.path}, which is not a regular file"
    if info.st_mode & 0o022 or info.st_uid not in (0, proc.peer.uid):
        return (f"it runs code from {mapping.path}, which others can write "
                f"(owner uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o})")
    return None


def problems(proc: Process, *, python: bool) -> list[str]:
    """Every reason foreign code could run in ``proc`` (step 3); empty when none."""
    found = [f"its environment sets {name}, which loads foreign code"
             for name in sorted(proc.env_names) if name in _FORBIDDEN_ENV]
    found += [f"its environment sets {name} (a Python workload runs isolated: no PYTHON* "
              "variable may steer its interpreter)"
              for name in sorted(proc.env_names) if python and name.startswith("PYTHON")]
    if proc.tracer:
        found.append(f"it is traced by pid {proc.tracer}")
    uid, gid = proc.peer.uid, proc.peer.gid
    if any(v != uid for v in proc.ids[0]) or any(v != gid for v in proc.ids[1]):
        found.append("its uids or gids changed since it connected")
    seen: set[str] = set()
    for mapping in proc.maps:
        if mapping.executable and mapping.path not in seen:
            seen.add(mapping.path)
            why = _mapping_problem(proc, mapping)
            if why:
                found.append(why)
    if python and tuple(proc.argv[1:5]) not in RUNTIME_ARGV:
        found.append("it is a Python interpreter but not `python -I -m cloister.cli run` "
                     f"(its arguments: {' '.join(proc.argv[1:5])}): only cloister's runtime "
                     "in isolated mode is quoted")
    return found
