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


def _create(path: Path, data: bytes, mode: int, durable: bool = True) -> None:
    fd = os.open(path, _FLAGS, mode)
    try:
        os.fchmod(fd, mode)  # exactly ``mode``: the umask neither widens nor narrows it
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def write_private_file(
    path: Path | str, data: bytes, *, replace: bool = False, keep_existing: bool = False,
    mode: int = 0o600, durable: bool = True,
) -> bool:
    """Create ``path`` (mode ``mode``, 0600 unless said) holding ``data``, fsync'd.

    By default an existing ``path`` is an error (:class:`FileExistsError`);
    ``replace=True`` renames the new file over it; ``keep_existing=True``
    publishes the complete file only if none exists yet (a hard link: of two
    processes racing, exactly one file wins and neither is overwritten).
    Returns False only when ``keep_existing`` kept another's file.
    ``durable=False`` skips the fsync (bulk output that can be made again).
    """
    target = Path(path)
    if not (replace or keep_existing):
        _create(target, data, mode, durable)
        return True
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    _create(tmp, data, mode, durable)
    if replace:
        os.replace(tmp, target)
        return True
    try:
        os.link(tmp, target)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True


def check_private_file(path: Path) -> None:
    """Refuse a key file that group or others can read or write."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise errors.ConfigError(
            f"key file {path} has unsafe permissions {mode:04o}",
            details=[f"run: chmod 600 {path}"],
        )
