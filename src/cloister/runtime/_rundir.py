"""A directory of this run for a native program's injected files.

Invariants:

- its name, ``/dev/shm/cloister-run-<uid>-<128 random bits>``, is
  unpredictable, and it is created with ``mkdir`` (0700), which fails
  rather than reuse anything that exists: a directory another user made in
  advance neither blocks the workload nor redirects a byte of it;
- it lives on a memory filesystem (``/dev/shm`` is tmpfs; checked);
- it holds ``.lock``, locked (``flock``) by the run and inherited by the
  program, so the lock is free exactly when neither lives;
- :func:`remove_stale` (each start) removes this user's run directories
  whose lock is free — what a ``kill -9`` left — and touches nobody else's;
- the policy's paths are kept: each injected file's directory ``D`` is placed
  at ``<run dir>/D``, and ``D`` is rewritten to that place in the program's
  arguments, environment, working directory and injected text files.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from cloister import errors

BASE = "/dev/shm"  # noqa: S108 - a memory filesystem; each run's directory is private
_LOCK = ".lock"


def _prefix() -> str:
    return f"cloister-run-{os.geteuid()}-"


def remove_stale(base: str = BASE) -> list[str]:
    """Remove this user's run directories that no live run or program holds; their names."""
    removed: list[str] = []
    try:
        names = [n for n in os.listdir(base) if n.startswith(_prefix())]
    except OSError:
        return removed
    for name in names:
        path = os.path.join(base, name)
        try:
            info = os.lstat(path)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
                continue  # not ours: never touched
            fd = os.open(os.path.join(path, _LOCK), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            fd = -1
        try:
            if fd >= 0:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # in use
        finally:
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


@dataclass
class RunDir:
    path: str
    lock_fd: int

    @classmethod
    def create(cls, base: str = BASE) -> RunDir:
        """A fresh private directory (module invariants); stale ones are removed first."""
        remove_stale(base)
        for _ in range(8):
            path = os.path.join(base, _prefix() + secrets.token_hex(16))
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                continue
            except OSError as err:
                raise errors.LaunchError(
                    f"cannot create a private directory in {base} for injected files: "
                    f"{err.strerror}") from None
            fd = os.open(os.path.join(path, _LOCK),
                         os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            return cls(path, fd)
        raise errors.LaunchError(f"cannot create a private directory in {base}")

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)


def _boundary(directory: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w./-])" + re.escape(directory) + r"(?=/|$|[^\w.-])")


class Relocation:
    """Rewrites the policy's directories of injected files to their place in the run dir."""

    def __init__(self, run_dir: str, paths: Iterable[str]) -> None:
        dirs = {os.path.dirname(p) for p in paths} - {"/"}
        # longest first, so /a/b is placed before /a claims it
        self.moves = [(_boundary(d), run_dir + d) for d in sorted(dirs, key=len, reverse=True)]
        self.run_dir = run_dir

    def path(self, path: str) -> str:
        """Where a policy path is placed (files directly below ``/`` go to the run dir)."""
        if os.path.dirname(path) == "/":
            return self.run_dir + path
        return self.text(path)

    def text(self, text: str) -> str:
        for pattern, target in self.moves:
            text = pattern.sub(target.replace("\\", "\\\\"), text)
        return text

    def data(self, content: bytes) -> bytes:
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            return content
        return self.text(text).encode("utf-8")
