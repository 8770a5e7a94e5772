"""In-process, in-memory, read-only file overlay for Python workloads.

``cloister run`` uses one :class:`MemFS` for files the policy injects (e.g. a
TLS key at ``/tls/flask.key``, which never exists on disk) and for the files
of protected trees (served decrypted and verified from memory).

Invariants:
- an overlaid path is read-only: opening it for writing raises
  PermissionError; nothing it holds is ever written to a file system — TLS
  files reach OpenSSL through an anonymous ``memfd`` closed right after use;
- patched: ``builtins.open``, ``io.open`` (hence ``pathlib`` reads),
  ``os.stat``/``os.lstat`` (hence ``os.path.exists/isfile/isdir`` and
  ``Path.exists/is_file``), ``os.listdir``, ``os.scandir``, and
  ``ssl.SSLContext.load_cert_chain``/``load_verify_locations`` (where Flask,
  Werkzeug and redis-py load TLS files);
- a path in a protected region that its protection file does not list is
  refused with an IntegrityError rather than read from the disk.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import locale
import os
import ssl
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cloister import errors
from cloister.fspf import ProtectedTree

_REAL: dict[str, Any] = {
    "open": builtins.open,
    "io_open": io.open,
    "os_open": os.open,
    "stat": os.stat,
    "lstat": os.lstat,
    "listdir": os.listdir,
    "scandir": os.scandir,
    "load_cert_chain": ssl.SSLContext.load_cert_chain,
    "load_verify_locations": ssl.SSLContext.load_verify_locations,
}
_WRITE_MODES = frozenset("wax+")


@dataclass(frozen=True)
class _Hit:
    """What an overlaid path is: a file (data or tree) or a directory."""

    kind: str  # "mem", "tree", "dir"
    path: str
    data: bytes = b""
    mode: int = 0o444
    size: int = 0
    tree: ProtectedTree | None = None
    logical: str = ""
    names: tuple[str, ...] = ()


class MemFS:
    """A set of in-memory files and protected trees, visible to this process once installed."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, int]] = {}
        self._dirs: dict[str, set[str]] = {}
        self._trees: list[tuple[ProtectedTree, str]] = []
        self._installed = False

    # --- content ------------------------------------------------------------

    def add_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Make ``data`` readable at the absolute ``path`` (parents appear as directories)."""
        if not os.path.isabs(path):
            raise errors.ConfigError(f"injected file path {path!r} must be absolute")
        path = os.path.normpath(path)
        self._files[path] = (bytes(data), mode & 0o777)
        child, parent = path, os.path.dirname(path)
        while child != parent:
            self._dirs.setdefault(parent, set()).add(os.path.basename(child))
            child, parent = parent, os.path.dirname(parent)

    def add_tree(self, tree: ProtectedTree, sealed_root: str | None = None) -> None:
        """Serve the files of ``tree`` below ``sealed_root`` (default ``tree.default_root``)."""
        self._trees.append((tree, os.path.abspath(sealed_root or tree.default_root)))

    def lookup(self, path: Any) -> _Hit | None:
        """The overlay entry of ``path`` (str, bytes or path-like), or None."""
        if isinstance(path, int):
            return None
        try:
            name = os.fsdecode(os.fspath(path))
        except TypeError:
            return None
        full = os.path.normpath(os.path.abspath(name))
        if full.startswith("//"):
            full = "/" + full.lstrip("/")  # POSIX keeps "//x" distinct in normpath; Linux does not
        if full in self._files:
            data, mode = self._files[full]
            return _Hit("mem", full, data=data, mode=mode, size=len(data))
        if full in self._dirs:
            return _Hit("dir", full, names=tuple(sorted(self._dirs[full])))
        for tree, root in self._trees:
            logical = tree.to_logical(full, root)
            if logical is None:
                continue
            info = tree.stat(logical)
            if info is not None and not info.is_dir:
                return _Hit(
                    "tree", full, mode=info.mode, size=info.size, tree=tree, logical=logical
                )
            if info is not None:
                return _Hit("dir", full, names=tuple(tree.listdir(logical)))
            if tree.covers(logical) and _real_isfile(full):
                raise errors.IntegrityError(
                    f"{full} is in a protected region but not listed in the protection file "
                    f"{tree.fspf_path} (added after sealing?)"
                )
        return None

    def protects(self, path: Any) -> bool:
        """True when ``path`` lies in a protected region of a tree (listed or not)."""
        try:
            full = os.path.normpath(os.path.abspath(os.fsdecode(os.fspath(path))))
        except TypeError:
            return False
        full = "/" + full.lstrip("/")
        for tree, root in self._trees:
            logical = tree.to_logical(full, root)
            if logical is not None and tree.covers(logical):
                return True
        return False

    def read_bytes(self, path: str) -> bytes | None:
        """The content of an overlaid file, or None when ``path`` is not overlaid."""
        hit = self.lookup(path)
        if hit is None or hit.kind == "dir":
            return None
        return hit.tree.read(hit.logical) if hit.tree is not None else hit.data

    # --- install ------------------------------------------------------------

    def install(self) -> None:
        """Patch the process's file and TLS-loading functions to see this overlay."""
        global _ACTIVE  # noqa: PLW0603 - one process-wide overlay, by design
        if _ACTIVE is not None and _ACTIVE is not self:
            raise errors.LaunchError("another in-memory file overlay is already installed")
        _ACTIVE = self
        _patch(_patched())
        self._installed = True

    def uninstall(self) -> None:
        """Restore the real functions (tests; a workload never needs it)."""
        global _ACTIVE  # noqa: PLW0603
        if _ACTIVE is not self:
            return
        _patch(_REAL)
        _ACTIVE = None
        self._installed = False


_ACTIVE: MemFS | None = None


_TARGETS: dict[str, tuple[Any, str]] = {
    "open": (builtins, "open"),
    "io_open": (io, "open"),
    "os_open": (os, "open"),
    "stat": (os, "stat"),
    "lstat": (os, "lstat"),
    "listdir": (os, "listdir"),
    "scandir": (os, "scandir"),
    "load_cert_chain": (ssl.SSLContext, "load_cert_chain"),
    "load_verify_locations": (ssl.SSLContext, "load_verify_locations"),
}


def _patch(table: dict[str, Any]) -> None:
    """Set every patched function from ``table`` (``setattr``: they are the process's own)."""
    for key, (owner, name) in _TARGETS.items():
        setattr(owner, name, table[key])


def _patched() -> dict[str, Any]:
    return {
        "open": _open,
        "io_open": _open,
        "os_open": _os_open,
        "stat": _stat,
        "lstat": _lstat,
        "listdir": _listdir,
        "scandir": _scandir,
        "load_cert_chain": _load_cert_chain,
        "load_verify_locations": _load_verify_locations,
    }


def _real_isfile(path: str) -> bool:
    try:
        return stat.S_ISREG(_REAL["stat"](path).st_mode)
    except OSError:
        return False


def _hit(path: Any) -> _Hit | None:
    return _ACTIVE.lookup(path) if _ACTIVE is not None else None


def _read_only(hit: _Hit) -> PermissionError:
    return PermissionError(
        errno.EACCES,
        "file is provided in memory by cloister and is read-only (write elsewhere)",
        hit.path,
    )


def _open(  # noqa: PLR0917 - the signature of builtins.open
    file: Any,
    mode: str = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Any = None,
) -> Any:
    hit = _hit(file)
    if hit is None:
        if _WRITE_MODES & set(mode) and _ACTIVE is not None and _ACTIVE.protects(file):
            raise _protected_write(file)
        return _REAL["io_open"](file, mode, buffering, encoding, errors, newline, closefd, opener)
    if _WRITE_MODES & set(mode):
        raise _read_only(hit)
    if hit.kind == "dir":
        raise IsADirectoryError(errno.EISDIR, "Is a directory", hit.path)
    if hit.tree is not None:
        raw: Any = hit.tree.open_file(hit.logical)  # its name is the file's path already
    else:
        raw = io.BytesIO(hit.data)
        raw.name = hit.path
    if "b" in mode:
        return raw
    enc = encoding if encoding not in (None, "locale") else locale.getpreferredencoding(False)
    text = io.TextIOWrapper(raw, enc, errors, newline)
    text.mode = mode  # type: ignore[misc]
    return text


_OS_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _protected_write(path: Any) -> PermissionError:
    return PermissionError(
        errno.EACCES,
        "file is in a region protected by cloister's file shield, which is read-only "
        "(write elsewhere)",
        os.fsdecode(os.fspath(path)),
    )


def _os_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
    """``os.open``: overlaid files come as a read-only memfd holding the verified bytes."""
    if dir_fd is not None:
        return int(_REAL["os_open"](path, flags, mode, dir_fd=dir_fd))
    hit = _hit(path)
    if hit is None:
        if flags & _OS_WRITE_FLAGS and _ACTIVE is not None and _ACTIVE.protects(path):
            raise _protected_write(path)
        return int(_REAL["os_open"](path, flags, mode))
    if flags & _OS_WRITE_FLAGS:
        raise _read_only(hit)
    if hit.kind == "dir":
        return int(_REAL["os_open"](path, flags, mode))
    data = hit.tree.read(hit.logical) if hit.tree is not None else hit.data
    fd = os.memfd_create(os.path.basename(hit.path), os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _stat_result(hit: _Hit) -> os.stat_result:
    if hit.kind == "dir":
        mode, size, nlink = stat.S_IFDIR | 0o555, 0, 2
    else:
        mode, size, nlink = stat.S_IFREG | hit.mode, hit.size, 1
    ino = hash(hit.path) & 0xFFFFFFFF
    return os.stat_result((mode, ino, 0, nlink, os.getuid(), os.getgid(), size, 0, 0, 0))


def _stat(path: Any, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> Any:
    hit = None if dir_fd is not None else _hit(path)
    if hit is None:
        return _REAL["stat"](path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
    return _stat_result(hit)


def _lstat(path: Any, *, dir_fd: int | None = None) -> Any:
    hit = None if dir_fd is not None else _hit(path)
    return _REAL["lstat"](path, dir_fd=dir_fd) if hit is None else _stat_result(hit)


def _listdir(path: Any = ".") -> Any:
    hit = _hit(path)
    if hit is None or hit.kind != "dir":
        return _REAL["listdir"](path)
    names = set(hit.names)
    if hit.tree is None and _ACTIVE is not None and not _in_tree(hit.path):
        with contextlib.suppress(OSError):
            names |= set(_REAL["listdir"](path))  # injected files beside real ones
    result = sorted(names)
    return [os.fsencode(n) for n in result] if isinstance(path, bytes) else result


def _in_tree(path: str) -> bool:
    assert _ACTIVE is not None
    return any(tree.to_logical(path, root) is not None for tree, root in _ACTIVE._trees)


class _Entry:
    """The part of ``os.DirEntry`` most callers use."""

    def __init__(self, directory: str, name: str) -> None:
        self.name = name
        self.path = os.path.join(directory, name)

    def stat(self, *, follow_symlinks: bool = True) -> Any:
        return _stat(self.path)

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return stat.S_ISDIR(_stat(self.path).st_mode)

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return stat.S_ISREG(_stat(self.path).st_mode)

    def is_symlink(self) -> bool:
        return False

    def inode(self) -> int:
        return int(_stat(self.path).st_ino)

    def __fspath__(self) -> str:
        return self.path


class _ScandirIterator:
    def __init__(self, directory: str, names: list[str]) -> None:
        self._it: Iterator[_Entry] = (_Entry(directory, n) for n in names)

    def __iter__(self) -> _ScandirIterator:
        return self

    def __next__(self) -> _Entry:
        return next(self._it)

    def __enter__(self) -> _ScandirIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._it = iter(())


def _scandir(path: Any = ".") -> Any:
    hit = _hit(path)
    if hit is None or hit.kind != "dir" or isinstance(path, int | bytes):
        return _REAL["scandir"](path)
    return _ScandirIterator(os.fspath(path), _listdir(os.fspath(path)))


def _memfd_path(data: bytes, stack: contextlib.ExitStack) -> str:
    fd = os.memfd_create("cloister-tls", os.MFD_CLOEXEC)
    stack.callback(os.close, fd)
    os.write(fd, data)
    return f"/proc/self/fd/{fd}"


def _load_cert_chain(
    self: ssl.SSLContext, certfile: Any, keyfile: Any = None, password: Any = None
) -> None:
    with contextlib.ExitStack() as stack:
        paths = []
        for name in (certfile, keyfile):
            data = None if name is None or _ACTIVE is None else _ACTIVE.read_bytes(name)
            paths.append(name if data is None else _memfd_path(data, stack))
        _REAL["load_cert_chain"](self, paths[0], paths[1], password)


def _load_verify_locations(
    self: ssl.SSLContext, cafile: Any = None, capath: Any = None, cadata: Any = None
) -> None:
    data = None if cafile is None or _ACTIVE is None else _ACTIVE.read_bytes(cafile)
    if data is None:
        _REAL["load_verify_locations"](self, cafile, capath, cadata)
        return
    pem = data.lstrip().startswith(b"-----")
    _REAL["load_verify_locations"](self, None, None, data.decode("ascii") if pem else data)
    if capath is not None or cadata is not None:
        _REAL["load_verify_locations"](self, None, capath, cadata)
