"""Launch a native program: injected files on a memory-backed filesystem, then exec.

A native program opens its files through the kernel, so they must exist in
a filesystem; cloister only writes them where that filesystem is ``tmpfs``
or ``ramfs`` (checked in ``/proc/self/mountinfo``) and refuses any other
before writing a byte.  Files are created 0600 (then set to the policy's
mode), parents 0700, never following a symbolic link.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from cloister import errors
from cloister.runtime._config import InjectedFile, LaunchConfig

MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal
    return (
        field.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )


def mounts(mountinfo: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every line of a ``mountinfo`` text."""
    found = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        found.append((_unescape(fields[4]), right.split()[0]))
    return found


def filesystem_of(path: str, table: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """The (mount point, type) that holds ``path``: the longest matching mount point, last wins."""
    best = ("/", "unknown")
    for point, fstype in table:
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, fstype)
    return best


def check_memory_backed(files: Sequence[InjectedFile], mountinfo: str | None = None) -> None:
    """Refuse (LaunchError) unless every injected file's directory is on tmpfs/ramfs."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    table = mounts(mountinfo)
    for injected in files:
        directory = os.path.dirname(injected.path)
        point, fstype = filesystem_of(
            os.path.realpath(directory) if os.path.exists(directory) else directory, table
        )
        if fstype not in MEMORY_FILESYSTEMS:
            raise errors.LaunchError(
                f"refusing to write injected file {injected.path}: {point} is {fstype}, not a "
                f"memory filesystem; mount one first (mount -t tmpfs -o mode=0700 tmpfs "
                f"{directory}) or inject below /dev/shm"
            )


def write_files(files: Sequence[InjectedFile]) -> None:
    for injected in files:
        os.makedirs(os.path.dirname(injected.path), mode=0o700, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(injected.path, flags, 0o600)
        try:
            os.write(fd, injected.content)
            os.fchmod(fd, injected.mode & 0o777)
        finally:
            os.close(fd)


def exec_native(config: LaunchConfig, program: str) -> None:
    """Write the injected files and replace this process with the program (never returns)."""
    if not config.command:
        raise errors.LaunchError(
            f"session {config.session} gives service {config.service} no command to run"
        )
    check_memory_backed(config.files)
    write_files(config.files)
    config.enter_pwd()
    try:
        os.execve(program, list(config.command), dict(config.environment))  # noqa: S606
    except OSError as err:
        raise errors.LaunchError(f"cannot execute {program}: {err.strerror}") from None


def resolve(program: str) -> str:
    found = program if os.sep in program else shutil.which(program)
    if found is None or not os.access(found, os.X_OK):
        raise errors.LaunchError(f"program {program!r} not found or not executable (PATH)")
    return os.path.realpath(found)
