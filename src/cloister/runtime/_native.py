"""Launch a native program: injected files on a memory-backed filesystem, then exec.

A native program opens its files through the kernel, so they must exist in
a filesystem.  They go to a directory made for this run
(:mod:`._rundir`: unpredictable name, 0700, on ``/dev/shm``), where the
policy's paths are placed and rewritten in the program's arguments and
environment.  ``cloister run`` then stays as the program's parent: it
forwards signals, waits, and removes the directory when the program exits;
the program is killed if ``cloister run`` dies (``PR_SET_PDEATHSIG``), and
the next start removes what a ``kill -9`` left.  A program without injected
files is exec'd directly.

How a file is written, so that neither a symbolic link nor another local user
can redirect or read it: the path is walked from ``/`` one directory at a
time with ``O_DIRECTORY | O_NOFOLLOW`` (missing directories are created
0700); the file's directory must be on a memory filesystem (its ``st_dev``
against ``/proc/self/mountinfo``, checked on the open descriptor), owned by
this user and writable by nobody else; the file is created afresh with
``O_EXCL`` (any old one unlinked first), mode set before the content.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from cloister import errors
from cloister.runtime._config import InjectedFile, LaunchConfig
from cloister.runtime._isolation import die_with_parent
from cloister.runtime._rundir import Relocation, RunDir

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
              signal.SIGUSR1, signal.SIGUSR2)

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


def memory_devices(mountinfo: str) -> set[int]:
    """``st_dev`` numbers of the tmpfs/ramfs mounts of a ``mountinfo`` text."""
    devices = set()
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if sep and right.split()[0] in MEMORY_FILESYSTEMS:
            major, _, minor = left.split()[2].partition(":")
            devices.add(os.makedev(int(major), int(minor)))
    return devices


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _check_chain_link(fd: int, where: str, path: str) -> None:
    """A directory on the way must be root's or ours, and others may write to it only
    if it is sticky (/tmp, /dev/shm): then nobody else can rename what we put there."""
    info = os.fstat(fd)
    others_write = info.st_mode & 0o022
    if info.st_uid not in (0, os.geteuid()) or (others_write and not info.st_mode & 0o1000):
        raise errors.LaunchError(
            f"refusing to write injected file {path}: {where} belongs to another user or "
            "others may replace what is in it"
        )


def _open_parent(path: str) -> int:
    """A descriptor of ``path``'s directory (symbolic links resolved first, then walked
    from ``/`` without following any), created 0700 where missing."""
    directory = os.path.realpath(os.path.dirname(path))
    fd = os.open("/", _DIR_FLAGS)
    walked = ""
    try:
        for part in directory.split("/")[1:]:
            if part in ("", ".", ".."):
                continue
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o700, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            walked += "/" + part
            _check_chain_link(fd, walked, path)
    except OSError as err:
        os.close(fd)
        raise errors.LaunchError(
            f"cannot reach the directory of injected file {path}: {err.strerror} "
            "(did something replace a directory on the way?)"
        ) from None
    except errors.LaunchError:
        os.close(fd)
        raise
    return fd


def _check_directory(fd: int, path: str, devices: set[int]) -> None:
    info = os.fstat(fd)
    directory = os.path.dirname(path)
    if info.st_dev not in devices:
        raise errors.LaunchError(
            f"refusing to write injected file {path}: {directory} is not on a memory "
            f"filesystem (mount -t tmpfs -o mode=0700 tmpfs {directory})"
        )
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise errors.LaunchError(
            f"refusing to write injected file {path}: {directory} is not owned by this user or "
            "is writable by others; inject into a directory of your own (it is created 0700)"
        )


def write_files(files: Sequence[InjectedFile], mountinfo: str | None = None) -> None:
    """Write every injected file as the module docstring describes (LaunchError if unsafe)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    devices = memory_devices(mountinfo)
    for injected in files:
        parent = _open_parent(injected.path)
        try:
            _check_directory(parent, injected.path, devices)
            name = os.path.basename(injected.path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=parent)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(name, flags, 0o600, dir_fd=parent)
            try:
                os.fchmod(fd, injected.mode & 0o777)
                view = memoryview(injected.content)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        except OSError as err:
            raise errors.LaunchError(
                f"cannot write injected file {injected.path}: {err.strerror}"
            ) from None
        finally:
            os.close(parent)


def exec_native(config: LaunchConfig, program: str) -> None:
    """Launch the program (module docstring); never returns: exits with its status."""
    if not config.command:
        raise errors.LaunchError(
            f"session {config.session} gives service {config.service} no command to run"
        )
    if not config.files:
        config.enter_pwd()
        _exec(program, config)
    run_dir = RunDir.create()
    try:
        placed = _relocate(config, Relocation(run_dir.path, [f.path for f in config.files]))
        # by path first, so a refused file creates no directory on disk; then by descriptor
        # while writing, which no link or rename between the two steps can fool
        check_memory_backed(placed.files)
        write_files(placed.files)
        placed.enter_pwd()
        status = _supervise(program, placed)
    finally:
        run_dir.remove()
    os._exit(status)


def _relocate(config: LaunchConfig, moved: Relocation) -> LaunchConfig:
    return replace(
        config,
        command=tuple(moved.text(a) for a in config.command),
        environment={k: moved.text(v) for k, v in config.environment.items()},
        pwd=None if config.pwd is None else moved.text(config.pwd),
        files=tuple(InjectedFile(moved.path(f.path), f.mode, moved.data(f.content))
                    for f in config.files),
    )


def _exec(program: str, config: LaunchConfig) -> None:
    try:
        os.execve(program, list(config.command), dict(config.environment))  # noqa: S606
    except OSError as err:
        raise errors.LaunchError(f"cannot execute {program}: {err.strerror}") from None


def _supervise(program: str, config: LaunchConfig) -> int:
    """Fork, exec the program in the child, forward signals; the child's exit status."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the runtime
        try:
            die_with_parent(signal.SIGKILL)
            if os.getppid() != parent:
                os._exit(1)
            for sig in _FORWARDED:
                signal.signal(sig, signal.SIG_DFL)
            _exec(program, config)
        except BaseException as err:
            message = err.message if isinstance(err, errors.Error) else type(err).__name__
            os.write(2, f"cloister: error: {message}\n".encode())
        os._exit(6)
    for sig in _FORWARDED:
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)
        if os.WIFEXITED(status):
            return os.WEXITSTATUS(status)


def resolve(program: str) -> str:
    found = program if os.sep in program else shutil.which(program)
    if found is None or not os.access(found, os.X_OK):
        raise errors.LaunchError(f"program {program!r} not found or not executable (PATH)")
    return os.path.realpath(found)
