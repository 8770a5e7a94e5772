"""Building protection files: SCONE's create/addr/addf/encrypt flow and one-step :func:`seal`.

Invariants:
- a file of an encrypted region is written only as ciphertext, under a fresh
  random key recorded in the manifest; its ``.py`` code companion (marshalled
  code bound to the interpreter's magic number) is encrypted the same way;
- authenticated files stay plaintext; the manifest holds their chunk digests;
- ``__pycache__`` directories of the source are never sealed (they would be a
  plaintext copy of the code); a manifest that holds file keys in the clear
  (before ``encrypt``) is written 0600.
"""

from __future__ import annotations

import importlib.util
import marshal
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from cloister import errors
from cloister._files import write_private_file
from cloister.fspf import _crypto, _manifest
from cloister.fspf._manifest import FileEntry, Manifest, Region
from cloister.fspf._tree import CODE_SUFFIX, parse_hex

Progress = Callable[[int, int], None]
FSPF_NAME = "fspf.pb"


@dataclass(frozen=True)
class SealResult:
    """Where the protection file is, and the key and tag a policy needs."""

    fspf_path: str
    key_hex: str
    tag_hex: str
    files: int


# --- SCONE-style steps -----------------------------------------------------


def create(fspf_path: str) -> str:
    """Write an empty, unencrypted protection file; returns its tag (hex)."""
    return _manifest.save_plain(fspf_path, Manifest()).hex()


def add_region(
    fspf_path: str,
    region: str,
    protection: str,
    *,
    kernel: str | None = None,
    ephemeral: bool = False,
    key_bytes: int = 32,
    chunk: int = _manifest.DEFAULT_CHUNK,
) -> str:
    """Add a region to an unencrypted protection file; returns the new tag.

    A relative ``kernel`` is stored relative to the protection file's
    directory, so the tree can be moved as a whole; an absolute one as is.
    """
    if protection not in _manifest.PROTECTIONS:
        raise errors.ConfigError(f"protection must be one of {', '.join(_manifest.PROTECTIONS)}")
    if (kernel is None) == (not ephemeral):
        raise errors.ConfigError("a region needs exactly one of --kernel DIR or --ephemeral")
    if key_bytes not in (16, 24, 32) or chunk < 1:
        raise errors.ConfigError("key length must be 16, 24 or 32 bytes and chunk length positive")
    manifest = _manifest.load_plain(fspf_path)
    stored = None
    if kernel is not None:
        base = os.path.dirname(os.path.abspath(fspf_path))
        # absolute stays absolute (SCONE's usage); relative is kept relative to the file
        stored = kernel if os.path.isabs(kernel) else os.path.relpath(os.path.abspath(kernel), base)
    path = _manifest.normalize_region(region)
    manifest.add_region(Region(path, protection, stored, ephemeral, chunk, key_bytes))
    return _manifest.save_plain(fspf_path, manifest).hex()


def add_files(
    fspf_path: str,
    region: str,
    src_dir: str,
    out_dir: str | None = None,
    *,
    progress: Progress | None = None,
) -> tuple[int, str]:
    """Record (and for encrypted regions, encrypt into ``out_dir``) the files of ``src_dir``.

    Returns ``(number of files, new tag)``.
    """
    manifest = _manifest.load_plain(fspf_path)
    path = _manifest.normalize_region(region)
    target = next((r for r in manifest.regions if r.path == path), None)
    if target is None:
        raise errors.ConfigError(
            f"region {path} is not in {fspf_path}; add it with 'fspf addr'"
        )
    if not target.protected:
        raise errors.ConfigError(f"region {path} is not protected; no files need to be added")
    if target.protection == "encrypted" and out_dir is None:
        raise errors.ConfigError(f"region {path} is encrypted: give OUT_DIR for the ciphertext")
    src = _source_dir(src_dir)
    listing = [(rel, target) for rel in _walk(src) if manifest.region_of(path + rel) is target]
    done = _seal_files(manifest, listing, src, out_dir, progress)
    return done, _manifest.save_plain(fspf_path, manifest).hex()


def encrypt(fspf_path: str) -> tuple[str, str]:
    """Encrypt a protection file in place under a fresh key; returns ``(key_hex, tag_hex)``."""
    manifest = _manifest.load_plain(fspf_path)
    manifest.validate(fspf_path)
    key = _crypto.new_key()
    tag = _manifest.save_encrypted(fspf_path, manifest, key)
    return key.hex(), tag.hex()


def tag(fspf_path: str) -> str:
    """The current tag of a protection file, plain or encrypted."""
    kind, body = _manifest.read_raw(fspf_path)
    return _manifest.tag_of(kind, body).hex()


def describe(fspf_path: str, key_hex: str | None = None) -> list[str]:
    """Human-readable lines: regions and files (never a key)."""
    kind, body = _manifest.read_raw(fspf_path)
    if kind == _manifest.KIND_PLAIN:
        manifest = Manifest.parse(body, fspf_path)
        state = "not encrypted"
    elif key_hex is None:
        return [f"{fspf_path}: encrypted, tag {tag(fspf_path)}; give KEY to show its content"]
    else:
        manifest = _manifest.decrypt(fspf_path, kind, body, parse_hex(key_hex, 32, "KEY"))
        state = "encrypted"
    lines = [f"{fspf_path}: {state}, tag {tag(fspf_path)}"]
    for r in sorted(manifest.regions, key=lambda r: r.path):
        where = "ephemeral" if r.ephemeral else f"kernel {r.kernel}"
        lines.append(f"region {r.path} {r.protection} {where} chunk {r.chunk}")
    for path, entry in sorted(manifest.files.items()):
        extra = " +code" if entry.code_magic else ""
        lines.append(f"file {path} {entry.size} bytes mode {entry.mode:o}{extra}")
    return lines


# --- one step --------------------------------------------------------------


def seal(
    src_dir: str,
    out_dir: str,
    *,
    authenticate: Iterable[str] = (),
    progress: Progress | None = None,
) -> SealResult:
    """Seal ``src_dir`` into ``out_dir``: encrypted, except ``authenticate`` subdirectories.

    ``out_dir`` gets the same file names as ``src_dir`` (ciphertext for the
    encrypted region, plaintext for authenticated ones) plus ``fspf.pb``.
    """
    src = _source_dir(src_dir)
    out = os.path.abspath(out_dir)
    if out == src or out.startswith(src + os.sep):
        raise errors.ConfigError(f"--out {out} must not lie inside the source tree {src}")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise errors.ConfigError(f"--out {out} exists and is not an empty directory")
    manifest = Manifest([Region("/", "encrypted", ".")])
    for auth in authenticate:
        full = os.path.realpath(os.path.join(src, auth))
        if not full.startswith(src + os.sep) or not os.path.isdir(full):
            raise errors.ConfigError(
                f"--authenticate {auth} must be a directory inside {src}",
                details=["install dependencies into the source tree, e.g. pip install --target"],
            )
        rel = os.path.relpath(full, src)
        manifest.add_region(Region("/" + rel.replace(os.sep, "/") + "/", "authenticated", rel))
    listing = []
    for rel in _walk(src):
        region = manifest.region_of("/" + rel)
        assert region is not None
        listing.append((rel, region))
    created = not os.path.exists(out)
    try:
        os.makedirs(out, exist_ok=True)
        files = _seal_files(manifest, listing, src, out, progress, whole_tree=True)
        fspf_path = os.path.join(out, FSPF_NAME)
        key = _crypto.new_key()
        sealed_tag = _manifest.save_encrypted(fspf_path, manifest, key)
    except BaseException:
        # no half-sealed tree left behind: a rerun would refuse a non-empty --out
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:
            _empty(out)
        raise
    return SealResult(fspf_path, key.hex(), sealed_tag.hex(), files)


def _empty(directory: str) -> None:
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


# --- helpers ---------------------------------------------------------------


def _source_dir(src_dir: str) -> str:
    src = os.path.realpath(src_dir)
    if not os.path.isdir(src):
        raise errors.ConfigError(f"source directory {src_dir} does not exist or is not a directory")
    return src


def _unreadable(err: OSError) -> None:
    raise errors.ConfigError(
        f"cannot read {err.filename} while sealing: {err.strerror}; a tree is sealed whole "
        "or not at all"
    )


def _walk(src: str) -> Iterator[str]:
    """Relative POSIX paths of the regular files below ``src``, sorted, without
    ``__pycache__``; an unreadable directory, a dangling link or a special file (FIFO,
    device, socket) is an error — a sealed tree never silently lacks part of its source."""
    for dirpath, dirnames, filenames in os.walk(src, onerror=_unreadable):
        for name in list(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                raise errors.ConfigError(
                    f"{os.path.join(dirpath, name)} is a symbolic link to a directory; "
                    "copy the directory instead"
                )
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel_dir = os.path.relpath(dirpath, src)
        for name in sorted(filenames):
            if name.endswith(".pyc"):
                continue
            rel = name if rel_dir == "." else os.path.join(rel_dir, name)
            _require_regular(os.path.join(dirpath, name))
            yield rel.replace(os.sep, "/")


def _require_regular(path: str) -> None:
    try:
        info = os.stat(path)
    except OSError as err:
        raise errors.ConfigError(
            f"cannot seal {path}: {err.strerror} (a dangling symbolic link?)"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise errors.ConfigError(f"cannot seal {path}: not a regular file (FIFO, device or "
                                 "socket); remove it from the source tree")


def _seal_files(
    manifest: Manifest,
    listing: list[tuple[str, Region]],
    src: str,
    out: str | None,
    progress: Progress | None,
    *,
    whole_tree: bool = False,
) -> int:
    names = {rel for rel, _ in listing}
    for done, (rel, region) in enumerate(listing, 1):
        if rel.endswith(".py") and rel + CODE_SUFFIX in names:
            raise errors.ConfigError(
                f"{src}/{rel}{CODE_SUFFIX} clashes with the sealed code of {rel}; rename it"
            )
        # seal() maps logical "/" to the source root; addf maps the region to it
        logical = "/" + rel if whole_tree else region.path + rel
        _seal_one(manifest, region, logical, src_file=os.path.join(src, rel), out=out, rel=rel)
        if progress is not None:
            progress(done, len(listing))
    return len(listing)


def _seal_one(
    manifest: Manifest, region: Region, logical: str, *, src_file: str, out: str | None, rel: str
) -> None:
    try:
        with open(src_file, "rb") as fh:
            data = fh.read()
        mode = os.stat(src_file).st_mode & 0o777
    except OSError as err:
        raise errors.ConfigError(f"cannot read {src_file} while sealing: {err.strerror}") \
            from None
    entry = FileEntry(size=len(data), mode=mode, chunk=region.chunk)
    code = _compile(data, logical) if logical.endswith(".py") else None
    dest = os.path.join(out, rel) if out is not None else None
    if region.protection == "encrypted":
        assert dest is not None
        entry.key = _crypto.new_key(region.key_bytes)
        stream = _crypto.encrypt_stream(entry.key, logical, _crypto.STREAM_DATA, data, entry.chunk)
        _write(dest, stream, mode)
        if code is not None:
            blob = _crypto.encrypt_stream(
                entry.key, logical, _crypto.STREAM_CODE, code, entry.chunk
            )
            _write(dest + CODE_SUFFIX, blob, 0o644)
    else:
        entry.digests = _crypto.chunk_digests(data, entry.chunk)
        if dest is not None and os.path.realpath(dest) != os.path.realpath(src_file):
            _write(dest, data, mode)
            if code is not None:
                entry.code_digests = _crypto.chunk_digests(code, entry.chunk)
                _write(dest + CODE_SUFFIX, code, 0o644)
        else:
            code = None  # never add files to the user's own source directory
    if code is not None:
        entry.code_magic = importlib.util.MAGIC_NUMBER.hex()
        entry.code_size = len(code)
    manifest.files[logical] = entry


def _compile(source: bytes, logical: str) -> bytes | None:
    """Marshalled code of ``source``, or None when it does not compile here."""
    try:
        code = compile(source, logical, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return None
    return importlib.util.MAGIC_NUMBER + marshal.dumps(code)


def _write(path: str, data: bytes, mode: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # sealed output can be sealed again: no fsync per file
    write_private_file(path, data, replace=True, mode=mode | 0o600, durable=False)
