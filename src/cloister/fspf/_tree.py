"""Reading a sealed tree back with integrity: :class:`ProtectedTree`.

Invariants:
- :meth:`ProtectedTree.open` compares the protection file's tag with the
  expected tag *before* decrypting it, then decrypts it with the key; any
  mismatch is an :class:`~cloister.errors.IntegrityError` naming the file;
- no byte of a protected file is returned before the chunk that holds it has
  been authenticated (GCM for encrypted files, SHA-256 for authenticated);
- decrypted data lives only in memory; nothing here writes to disk.
"""

from __future__ import annotations

import hmac
import importlib.util
import io
import os
import re
from dataclasses import dataclass

from cloister import errors
from cloister.fspf import _crypto, _manifest
from cloister.fspf._manifest import FileEntry, Manifest, Region

CODE_SUFFIX = ".code"
_HEX = re.compile(r"[0-9a-fA-F]+")
# the real calls, captured before any in-memory overlay patches ``os``
_REAL_OPEN = os.open  # the runtime's overlay patches os.open; the tree reads the disk
_REAL_STAT = os.stat
_REAL_FSTAT = os.fstat
_REAL_SCANDIR = os.scandir


@dataclass(frozen=True)
class FileInfo:
    """What ``stat`` needs of a protected path."""

    size: int
    mode: int
    is_dir: bool


def parse_hex(value: str, nbytes: int, what: str) -> bytes:
    """``value`` as bytes; a ConfigError naming ``what`` when it is not ``2*nbytes`` hex."""
    if len(value) != 2 * nbytes or not _HEX.fullmatch(value):
        raise errors.ConfigError(
            f"{what} must be {2 * nbytes} hex digits (got {len(value)} characters)"
        )
    return bytes.fromhex(value)


class ProtectedTree:
    """A verified protection file and access to the files it protects."""

    def __init__(self, fspf_path: str, manifest: Manifest, tag: bytes) -> None:
        self.fspf_path = os.path.abspath(fspf_path)
        self.tag_hex = tag.hex()
        self._manifest = manifest
        self._base = os.path.dirname(self.fspf_path)
        self._dirs: dict[str, set[str]] = {"/": set()}
        for logical in manifest.files:
            parts = logical.strip("/").split("/")
            for depth in range(len(parts)):
                parent = "/" + "/".join(parts[:depth])
                self._dirs.setdefault(parent, set()).add(parts[depth])

    # --- opening ------------------------------------------------------------

    @classmethod
    def open(
        cls, fspf_path: str, key_hex: str, tag_hex: str, *, check: bool = True
    ) -> ProtectedTree:
        """Verify the protection file against ``tag_hex``, decrypt it with ``key_hex``.

        With ``check`` (the default) also run :meth:`check`: every listed file
        present with its sealed size, and no unlisted file in a protected region.
        """
        key = parse_hex(key_hex, 32, "fspf_key")
        expected = parse_hex(tag_hex, 16, "fspf_tag")
        kind, body = _manifest.read_raw(fspf_path)
        actual = _manifest.tag_of(kind, body)
        if not hmac.compare_digest(actual, expected):
            raise errors.IntegrityError(
                f"protection file {fspf_path} has tag {actual.hex()}, expected {tag_hex.lower()}: "
                "the tree is not in the expected state (changed, or rolled back to an older "
                "version), or fspf_tag in the policy is wrong",
                details=["seal again and put the new fspf_tag into the policy"],
            )
        tree = cls(fspf_path, _manifest.decrypt(fspf_path, kind, body, key), actual)
        if check:
            tree.check()
        return tree

    # --- layout -------------------------------------------------------------

    @property
    def regions(self) -> list[Region]:
        return list(self._manifest.regions)

    @property
    def default_root(self) -> str:
        """Where the logical ``/`` is seen by the program: the kernel of region ``/``."""
        root = next((r for r in self._manifest.regions if r.path == "/"), None)
        if root is None or root.kernel is None:
            return "/"
        return self._kernel_dir(root)

    def _kernel_dir(self, region: Region) -> str:
        assert region.kernel is not None
        return os.path.normpath(os.path.join(self._base, region.kernel))

    def region_of(self, logical: str) -> Region | None:
        return self._manifest.region_of(_manifest.normalize_path(logical))

    def covers(self, logical: str) -> bool:
        """True when ``logical`` lies in an authenticated or encrypted region."""
        region = self.region_of(logical)
        return region is not None and region.protected

    def host_path(self, logical: str) -> str | None:
        """The host file that holds ``logical`` (ciphertext for encrypted regions)."""
        logical = _manifest.normalize_path(logical)
        region = self._manifest.region_of(logical)
        if region is None or region.kernel is None:
            return None
        rest = logical[len(region.path) :] if region.path != "/" else logical[1:]
        return os.path.join(self._kernel_dir(region), rest) if rest else self._kernel_dir(region)

    def files(self) -> list[str]:
        return sorted(self._manifest.files)

    def has_file(self, logical: str) -> bool:
        return _manifest.normalize_path(logical) in self._manifest.files

    def is_dir(self, logical: str) -> bool:
        return _manifest.normalize_path(logical) in self._dirs

    def listdir(self, logical: str) -> list[str]:
        """Names in a directory of the tree (files listed in the manifest only)."""
        return sorted(self._dirs.get(_manifest.normalize_path(logical), ()))

    def stat(self, logical: str) -> FileInfo | None:
        logical = _manifest.normalize_path(logical)
        entry = self._manifest.files.get(logical)
        if entry is not None:
            return FileInfo(entry.size, entry.mode, False)
        if logical in self._dirs:
            return FileInfo(0, 0o755, True)
        return None

    def to_logical(self, path: str, root: str) -> str | None:
        """Logical path of the absolute ``path`` as seen below ``root``, or None."""
        path = os.path.normpath(path)
        root = os.path.normpath(root)
        if root == "/":
            return path
        if path == root:
            return "/"
        if path.startswith(root + "/"):
            return path[len(root) :]
        return None

    # --- reading ------------------------------------------------------------

    def _entry(self, logical: str) -> tuple[str, FileEntry, str]:
        logical = _manifest.normalize_path(logical)
        entry = self._manifest.files.get(logical)
        host = self.host_path(logical) or logical
        if entry is None:
            if self.covers(logical):
                raise errors.IntegrityError(
                    f"{host} is in a protected region but not listed in the protection file "
                    f"{self.fspf_path} (added after sealing?)"
                )
            raise errors.NotFound(f"{host} is not part of the protected tree {self.fspf_path}")
        return logical, entry, host

    def _read_chunk(
        self, logical: str, entry: FileEntry, host: str, index: int, stream: int = 0
    ) -> bytes:
        size = entry.size if stream == _crypto.STREAM_DATA else entry.code_size
        digests = entry.digests if stream == _crypto.STREAM_DATA else entry.code_digests
        count = _crypto.chunk_count(size, entry.chunk)
        plain_len = min(entry.chunk, size - index * entry.chunk)
        overhead = _crypto.TAG_LEN if entry.key is not None else 0
        expected_host = size + count * overhead
        # raw os calls: this must not go through an installed in-memory overlay
        try:
            fd = _REAL_OPEN(host, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise errors.IntegrityError(
                f"protected file {host} is missing (listed in {self.fspf_path})"
            ) from None
        except OSError as exc:
            raise errors.IntegrityError(
                f"cannot read protected file {host}: {exc.strerror}"
            ) from None
        try:
            actual = _REAL_FSTAT(fd).st_size
            if actual != expected_host:
                raise errors.IntegrityError(
                    f"protected file {host} has {actual} bytes, expected {expected_host} "
                    "(truncated, extended or replaced)"
                )
            blob = os.pread(fd, plain_len + overhead, index * (entry.chunk + overhead))
        finally:
            os.close(fd)
        if entry.key is not None:
            plain = _crypto.decrypt_chunk(
                entry.key, logical, blob, stream=stream, index=index, last=index == count - 1
            )
        else:
            ok = hmac.compare_digest(_crypto.chunk_digests(blob, entry.chunk)[0], digests[index])
            plain = blob if ok else None
        if plain is None:
            raise errors.IntegrityError(
                f"protected file {host} failed its integrity check at chunk {index}: "
                + self._diagnose(logical, blob, stream)
            )
        return plain

    def _diagnose(self, logical: str, blob: bytes, stream: int) -> str:
        """Name the file whose content this is, when it was swapped in (error path only)."""
        for other, entry in self._manifest.files.items():
            if other == logical:
                continue
            if entry.key is not None:
                count = _crypto.chunk_count(entry.size, entry.chunk)
                plain = _crypto.decrypt_chunk(
                    entry.key, other, blob, stream=stream, index=0, last=count == 1
                )
                hit = plain is not None
            else:
                digests = entry.digests if stream == _crypto.STREAM_DATA else entry.code_digests
                hit = bool(digests) and _crypto.chunk_digests(blob, entry.chunk)[0] == digests[0]
            if hit:
                host = self.host_path(other) or other
                return f"it holds the content of {host} (files swapped)"
        return "its content was modified"

    def read(self, logical: str) -> bytes:
        """The whole verified plaintext of a file of the tree."""
        logical, entry, host = self._entry(logical)
        count = _crypto.chunk_count(entry.size, entry.chunk)
        return b"".join(self._read_chunk(logical, entry, host, i) for i in range(count))

    def open_file(self, logical: str) -> io.BufferedReader:
        """A lazily decrypting binary reader: only the chunks read are verified and held."""
        logical, entry, host = self._entry(logical)
        return io.BufferedReader(_ChunkReader(self, logical, entry, host), entry.chunk)

    def code(self, logical: str) -> bytes | None:
        """The sealed marshalled code of a ``.py`` file, if sealed for this interpreter."""
        logical, entry, host = self._entry(logical)
        if entry.code_magic != importlib.util.MAGIC_NUMBER.hex():
            return None
        code_host = host + CODE_SUFFIX
        count = _crypto.chunk_count(entry.code_size, entry.chunk)
        return b"".join(
            self._read_chunk(logical, entry, code_host, i, _crypto.STREAM_CODE)
            for i in range(count)
        )

    # --- whole-tree check ---------------------------------------------------

    def check(self) -> None:
        """Every listed file present with its sealed size; no unlisted file in a protected region.

        Raises one IntegrityError listing every problem found.
        """
        problems: list[str] = []
        allowed: set[str] = {self.fspf_path}
        for logical, entry in self._manifest.files.items():
            host = self.host_path(logical)
            if host is None:
                continue
            allowed.add(host)
            overhead = _crypto.TAG_LEN if entry.key is not None else 0
            expected = entry.size + _crypto.chunk_count(entry.size, entry.chunk) * overhead
            problems += _size_problem(host, expected)
            if entry.code_magic is not None:
                allowed.add(host + CODE_SUFFIX)
                expected = entry.code_size + overhead * _crypto.chunk_count(
                    entry.code_size, entry.chunk
                )
                problems += _size_problem(host + CODE_SUFFIX, expected)
        for region in self._manifest.regions:
            if region.protected and region.kernel is not None:
                problems += self._extra_files(region, allowed)
        if problems:
            raise errors.IntegrityError(
                f"protected tree of {self.fspf_path} does not match its protection file "
                f"({len(problems)} problem{'s' if len(problems) > 1 else ''})",
                details=problems,
            )

    def _extra_files(self, region: Region, allowed: set[str]) -> list[str]:
        found: list[str] = []
        pending = [(self._kernel_dir(region), region.path)]
        while pending:
            host_dir, logical_dir = pending.pop()
            try:
                entries = list(_REAL_SCANDIR(host_dir))
            except FileNotFoundError:
                continue
            for item in entries:
                logical = logical_dir + item.name
                if item.is_dir(follow_symlinks=False):
                    # subtrees of a longer region are that region's business
                    if self._manifest.region_of(logical + "/") is region:
                        pending.append((item.path, logical + "/"))
                elif item.path not in allowed and self._manifest.region_of(logical) is region:
                    found.append(
                        f"{item.path} is not listed in the protection file (added after "
                        "sealing: remove it, or seal again)"
                    )
        return sorted(found)


def _size_problem(host: str, expected: int) -> list[str]:
    try:
        actual = _REAL_STAT(host).st_size
    except FileNotFoundError:
        return [f"{host} is missing (removed after sealing)"]
    except OSError as exc:
        return [f"{host} cannot be read: {exc.strerror}"]
    if actual != expected:
        return [f"{host} has {actual} bytes, expected {expected} (truncated or replaced)"]
    return []


class _ChunkReader(io.RawIOBase):
    """Random-access reader decrypting and verifying one chunk at a time."""

    def __init__(self, tree: ProtectedTree, logical: str, entry: FileEntry, host: str) -> None:
        super().__init__()
        self._tree, self._logical, self._entry, self._host = tree, logical, entry, host
        self._pos = 0
        self._cached: tuple[int, bytes] | None = None
        self.name = host

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._entry.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._pos >= self._entry.size:
            return 0
        index, skip = divmod(self._pos, self._entry.chunk)
        if self._cached is None or self._cached[0] != index:
            data = self._tree._read_chunk(self._logical, self._entry, self._host, index)
            self._cached = (index, data)
        piece = self._cached[1][skip : skip + len(buffer)]
        buffer[: len(piece)] = piece
        self._pos += len(piece)
        return len(piece)
