"""The one writer of files that must not be readable by others (keys, pins, identities).

``write_private_file`` creates the file itself with ``O_CREAT | O_EXCL |
O_NOFOLLOW`` and mode 0600 (no umask can widen it, no existing file or
symlink is written through), writes everything and fsyncs it before it
returns.  With ``replace=True`` it writes a sibling and renames it over the
target, so a reader sees the old file or the new one, never half of either.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cloister import errors

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _create(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, _FLAGS, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def write_private_file(
    path: Path | str, data: bytes, *, replace: bool = False, mode: int = 0o600
) -> None:
    """Create ``path`` (mode ``mode``, 0600 unless said) holding ``data``, fsync'd.

    Without ``replace`` an existing ``path`` is an error (:class:`FileExistsError`).
    """
    target = Path(path)
    if not replace:
        _create(target, data, mode)
        return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    _create(tmp, data, mode)
    os.replace(tmp, target)


def check_private_file(path: Path) -> None:
    """Refuse a key file that group or others can read or write."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise errors.ConfigError(
            f"key file {path} has unsafe permissions {mode:04o}",
            details=[f"run: chmod 600 {path}"],
        )
