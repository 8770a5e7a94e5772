"""Measurement: the digest a policy lists in ``mrenclaves`` for a program.

Encoding (``cloister-measurement-v1``)::

    measurement = SHA-256( b"cloister-measurement-v1\\0" ‖ kind ‖ b"\\0" ‖ item ‖ item ‖ … )
    item        = u64be(len(name)) ‖ name ‖ u64be(len(content)) ‖ content

with names UTF-8 and ``u64be`` an 8-byte big-endian length, so no two
different inputs encode alike.

- ``kind = b"python"``: the program is a Python interpreter.  Items are
  ``("interpreter", bytes of the interpreter executable)``, then — when the
  interpreter is this process's and maps a shared ``libpython`` (as
  ``/proc/self/maps`` lists it) — ``("libpython", bytes of that library)``,
  since the executable is then only a small stub; and then, sorted
  by name (byte order), one item per runtime file ``("cloister/<relative
  path>", bytes)`` for every ``*.py`` under the cloister package this process
  runs (``__pycache__`` directories excluded).  This is what runs when
  ``cloister run`` launches a Python service in-process: that interpreter
  plus this runtime.
- ``kind = b"native"``: one item ``("executable", bytes of the executable)``.

A program is found like a shell would (a name without ``/`` is looked up on
``PATH``), then symlinks are resolved, so ``python3`` and the versioned file
it points to measure alike.  It is a Python interpreter when the resolved
file is the same file as ``sys.executable`` or its basename is ``python``,
``python3`` or ``python3.N`` (optionally with a ``t`` or ``d`` ABI suffix).

Limits, stated plainly: the standard library and third-party packages are
not covered (protect them with the file shield),
and the runtime files are the ones *this* installation of cloister holds —
run ``cloister measure`` from the installation that ``cloister run`` uses.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from cloister import errors
from cloister._python import is_python_name

if TYPE_CHECKING:
    from cloister.attest._caller import Process

DOMAIN = b"cloister-measurement-v1\0"
_CHUNK = 1 << 20


def runtime_dir() -> Path:
    """The directory of the cloister package this process runs."""
    return Path(__file__).resolve().parent.parent  # .../cloister/attest/_measure.py


def resolve_program(program: str) -> Path:
    """The real file ``program`` names (PATH lookup for bare names, symlinks resolved)."""
    found = program if "/" in program else shutil.which(program)
    if found is None:
        raise errors.ConfigError(
            f"program {program!r} not found on PATH",
            details=["give its path, or add its directory to PATH"],
        )
    path = Path(found).resolve()
    if not path.exists():
        raise errors.ConfigError(f"program {program!r} does not exist ({path})")
    if not path.is_file():
        raise errors.ConfigError(f"program {program!r} ({path}) is not a regular file")
    return path


def is_python_interpreter(path: Path) -> bool:
    """True when the resolved ``path`` is a Python interpreter (rule in the module docstring)."""
    if is_python_name(path.name):
        return True
    try:
        return path.samefile(Path(sys.executable).resolve())
    except OSError:
        return False


def runtime_files(root: Path) -> list[tuple[str, Path]]:
    """``("cloister/<rel>", path)`` for every ``*.py`` under ``root``, sorted by name bytes.

    Directories are entered through symbolic links too; ``__pycache__`` is skipped.
    """
    items = []
    # os.scandir, not os.walk or Path.rglob: the LAS lists these on every quote, and a
    # directory entry knows its type without a stat of its own (links are still followed)
    pending = [(str(root), "cloister/")]
    while pending:
        top, prefix = pending.pop()
        try:
            with os.scandir(top) as listing:
                entries = list(listing)
        except OSError:
            continue  # as os.walk: a directory that cannot be listed contributes nothing
        for entry in entries:
            try:
                if entry.is_dir():
                    if entry.name != "__pycache__":
                        pending.append((entry.path, f"{prefix}{entry.name}/"))
                elif entry.name.endswith(".py") and entry.is_file():
                    items.append((prefix + entry.name, Path(entry.path)))
            except OSError:
                continue
    items.sort(key=lambda item: item[0].encode("utf-8"))
    return items


def _item_chunks(name: str, path: Path) -> Iterator[bytes]:
    encoded = name.encode("utf-8")
    yield len(encoded).to_bytes(8, "big") + encoded
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            yield size.to_bytes(8, "big")
            read = 0
            while chunk := handle.read(_CHUNK):
                read += len(chunk)
                yield chunk
    except OSError as exc:
        raise errors.ConfigError(f"cannot read {path} to measure it: {exc.strerror}") from None
    if read != size:
        raise errors.ConfigError(f"{path} changed while it was being measured: measure again")


def measure_items(kind: str, items: list[tuple[str, Path]]) -> str:
    """Hex SHA-256 of the encoding above for ``kind`` and the named files, in order."""
    digest = hashlib.sha256(DOMAIN + kind.encode("ascii") + b"\0")
    for name, path in items:
        for chunk in _item_chunks(name, path):
            digest.update(chunk)
    return digest.hexdigest()


def measure(program: str | None = None, *, runtime: Path | None = None) -> str:
    """The 64-hex measurement of ``program`` (default: this Python interpreter + runtime).

    ``runtime`` overrides the cloister package directory that is measured
    for a Python interpreter (another installation, or a copy in a test).
    Deterministic: the same files give the same value on every call and host.
    """
    path = resolve_program(sys.executable if program is None else program)
    if not is_python_interpreter(path):
        return measure_items("native", [("executable", path)])
    root = runtime_dir() if runtime is None else Path(runtime).resolve()
    files = runtime_files(root)
    if not files:
        raise errors.ConfigError(f"no cloister runtime files under {root}")
    return measure_items("python", [("interpreter", path), *shared_libpython(path), *files])


def shared_libpython(interpreter: Path) -> list[tuple[str, Path]]:
    """``[("libpython", path)]`` when ``interpreter`` is this process's and this process
    maps a shared libpython; ``[]`` otherwise (a static build has the interpreter in the
    executable, whatever ``Py_ENABLE_SHARED`` says: Debian's python3 is built both ways).

    What is mapped is what the LAS sees in ``/proc/PID/maps``, so both agree.
    """
    try:
        if not interpreter.samefile(Path(sys.executable).resolve()):
            return []
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and "x" in parts[1] and \
                os.path.basename(parts[5]).startswith("libpython"):
            return [("libpython", Path(parts[5]))]
    return []


# --- the LAS's side: measuring a caller the kernel named ----------------------------

#: measurements by the identity of every file they cover (device, inode, size, mtime,
#: ctime): a change to any file gives a new key, so the cache never answers for old bytes
_CACHE: dict[tuple[object, ...], str] = {}
_CACHE_LIMIT = 64


def _stat_key(items: list[tuple[str, Path]]) -> tuple[object, ...]:
    key: list[object] = []
    for name, path in items:
        info = os.stat(path)
        key.append((name, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns,
                    info.st_ctime_ns))
    return tuple(key)


def _measured(kind: str, items: list[tuple[str, Path]]) -> str:
    try:
        before = (kind, _stat_key(items))
    except OSError as exc:
        raise errors.EvidenceError(f"cannot measure the caller's {exc.filename}: "
                                   f"{exc.strerror}") from None
    cached = _CACHE.get(before)
    if cached is not None:
        return cached
    try:
        value = measure_items(kind, items)
    except errors.ConfigError as exc:
        raise errors.EvidenceError(f"cannot measure the caller: {exc.message}") from None
    if (kind, _stat_key(items)) == before:
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.clear()
        _CACHE[before] = value
    return value


def measure_caller(proc: Process, *, runtime: str | None, program: str | None) -> str:
    """The measurement of what ``proc`` runs, as :func:`measure` would compute it there.

    The bytes come from the kernel's view of the caller: its executable is
    ``/proc/PID/exe``, its ``libpython`` the mapping the kernel lists (same
    device and inode), and the files are read through ``/proc/PID/root``.
    ``runtime`` (the cloister package directory) and ``program`` (the native
    executable ``cloister run`` will exec) are where the caller says those
    files are: the LAS measures what is there, so naming other files than
    the ones it runs changes nothing but what the CAS is shown — which is
    why the LAS also insists on ``python -I -m cloister.cli run``.
    """
    exe = Path(f"/proc/{proc.peer.pid}/exe")
    if not is_python_interpreter(Path(proc.exe.removesuffix(" (deleted)"))):
        return _measured("native", [("executable", exe)])
    if program is not None:
        target = Path(proc.path(program))
        try:
            info = os.stat(target)
        except OSError:
            raise errors.EvidenceError(
                f"the program to launch, {program}, does not exist") from None
        if info.st_mode & 0o022 or info.st_uid not in (0, proc.peer.uid):
            raise errors.EvidenceError(f"the program to launch, {program}, is writable by others")
        return _measured("native", [("executable", target)])
    if runtime is None:
        raise errors.EvidenceError("a Python caller must name its cloister runtime directory")
    libpython = [("libpython", Path(proc.path(m.path))) for m in proc.maps
                 if m.executable and os.path.basename(m.path).startswith("libpython")][:1]
    files = runtime_files(Path(proc.path(runtime)))
    if not files:
        raise errors.EvidenceError(f"no cloister runtime files under {runtime}")
    return _measured("python", [("interpreter", exe), *libpython, *files])
