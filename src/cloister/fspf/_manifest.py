"""The protection file (manifest): regions and file entries, and its on-disk form.

On disk a protection file is ``HEADER ‖ body``.  ``HEADER`` is ``b"CLFSPF"``,
a format byte and ``P`` (plain, during ``fspf create/addr/addf``) or ``E``
(encrypted by ``fspf encrypt``/``seal``).  The body is the canonical JSON of
the manifest (sorted keys, no spaces), in the clear for ``P`` and as
``nonce ‖ AES-256-GCM(ciphertext) ‖ tag`` for ``E``.  A plain file holds the
per-file keys of encrypted regions, so it is written 0600.

Logical paths are absolute POSIX paths (``/pkg/mod.py``) in the namespace the
program sees below the sealed root.  A region is a prefix (``/`` or
``/a/b/``); a path belongs to the longest prefix that matches it.  A region's
``kernel`` is the host directory holding its files; a relative kernel is
relative to the directory of the protection file, so a sealed tree can move.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from typing import Any

from cloister import errors
from cloister._files import write_private_file
from cloister.fspf import _crypto

MAGIC = b"CLFSPF\x01"
KIND_PLAIN = b"P"
KIND_ENCRYPTED = b"E"
HEADER_LEN = len(MAGIC) + 1
PROTECTIONS = ("not-protected", "authenticated", "encrypted")
DEFAULT_CHUNK = 64 * 1024

_REAL_OPEN = os.open  # captured before the runtime's overlay patches os.open


def normalize_region(path: str) -> str:
    """``/a/b`` → ``/a/b/``; ``/`` stays; refuses relative paths and ``..``."""
    if not path.startswith("/") or "\x00" in path:
        raise errors.ConfigError(f"region {path!r} must be an absolute path such as / or /app/")
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise errors.ConfigError(f"region {path!r} must not contain '..'")
    return "/" + "".join(p + "/" for p in parts)


def normalize_path(path: str) -> str:
    """Canonical logical file path: absolute, no ``.``/``..``/empty parts."""
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts or "\x00" in path:
        raise errors.IntegrityError(f"invalid path {path!r} in protected tree")
    return "/" + "/".join(parts)


@dataclass(frozen=True)
class Region:
    """One region: a path prefix and how its files are protected."""

    path: str
    protection: str
    kernel: str | None = None
    ephemeral: bool = False
    chunk: int = DEFAULT_CHUNK
    key_bytes: int = 32

    @property
    def protected(self) -> bool:
        return self.protection != "not-protected"

    def contains(self, logical: str) -> bool:
        return self.path == "/" or logical.startswith(self.path) or logical + "/" == self.path


@dataclass
class FileEntry:
    """A file of a protected region.  ``key`` only for encrypted files."""

    size: int
    mode: int
    chunk: int
    key: bytes | None = None
    digests: list[str] = field(default_factory=list)
    #: compiled code companion: magic (hex), size, digests (authenticated only)
    code_magic: str | None = None
    code_size: int = 0
    code_digests: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"size": self.size, "mode": self.mode, "chunk": self.chunk}
        if self.key is not None:
            out["key"] = self.key.hex()
        if self.digests:
            out["sha256"] = self.digests
        if self.code_magic is not None:
            out["code"] = {"magic": self.code_magic, "size": self.code_size}
            if self.code_digests:
                out["code"]["sha256"] = self.code_digests
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FileEntry:
        code = raw.get("code") or {}
        key = raw.get("key")
        return cls(
            size=int(raw["size"]),
            mode=int(raw["mode"]),
            chunk=int(raw["chunk"]),
            key=bytes.fromhex(key) if key is not None else None,
            digests=list(raw.get("sha256", [])),
            code_magic=code.get("magic"),
            code_size=int(code.get("size", 0)),
            code_digests=list(code.get("sha256", [])),
        )


@dataclass
class Manifest:
    """Regions plus the files of every protected region, by logical path."""

    regions: list[Region] = field(default_factory=list)
    files: dict[str, FileEntry] = field(default_factory=dict)

    def region_of(self, logical: str) -> Region | None:
        """The longest-prefix region containing ``logical``, if any."""
        best: Region | None = None
        for region in self.regions:
            if region.contains(logical) and (best is None or len(region.path) > len(best.path)):
                best = region
        return best

    def add_region(self, region: Region) -> None:
        if any(r.path == region.path for r in self.regions):
            raise errors.ConfigError(
                f"region {region.path} already exists in the protection file"
            )
        self.regions.append(region)

    def validate(self, where: str) -> None:
        """A root region ``/`` is required as soon as there is more than one region."""
        if len(self.regions) > 1 and not any(r.path == "/" for r in self.regions):
            raise errors.ConfigError(
                f"{where}: more than one region but no root region '/'",
                details=["add one with: cloister fspf addr FILE / --kernel / --not-protected"],
            )

    def canonical(self) -> bytes:
        body = {
            "format": 1,
            "regions": [
                {
                    "path": r.path,
                    "protection": r.protection,
                    "kernel": r.kernel,
                    "ephemeral": r.ephemeral,
                    "chunk": r.chunk,
                    "key_bytes": r.key_bytes,
                }
                for r in sorted(self.regions, key=lambda r: r.path)
            ],
            "files": {path: entry.to_json() for path, entry in self.files.items()},
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, data: bytes, where: str) -> Manifest:
        try:
            body = json.loads(data)
            regions = [Region(**r) for r in body["regions"]]
            files = {p: FileEntry.from_json(e) for p, e in body["files"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise errors.IntegrityError(f"protection file {where} is malformed ({exc})") from None
        return cls(regions=regions, files=files)


def read_raw(path: str) -> tuple[bytes, bytes]:
    """``(kind, body)`` of the protection file at ``path``."""
    try:
        fd = _REAL_OPEN(path, os.O_RDONLY | os.O_CLOEXEC)  # raw: bypasses any overlay
        try:
            data = b""
            while chunk := os.read(fd, 1 << 20):
                data += chunk
        finally:
            os.close(fd)
    except OSError as exc:
        raise errors.ConfigError(
            f"cannot read protection file {path}: {exc.strerror}",
            details=["check fspf_path in the policy or the FILE argument"],
        ) from None
    if len(data) < HEADER_LEN or not data.startswith(MAGIC):
        raise errors.IntegrityError(f"{path} is not a cloister protection file (bad header)")
    kind = data[len(MAGIC) : HEADER_LEN]
    if kind not in (KIND_PLAIN, KIND_ENCRYPTED):
        raise errors.IntegrityError(f"{path} is not a cloister protection file (bad kind)")
    return kind, data[HEADER_LEN:]


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` (created with ``mode``, never the umask default).

    Only a regular file (or nothing) is replaced: never a device, a FIFO or a link's target.
    """
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        raise errors.ConfigError(
            f"{path} exists and is not a regular file; choose another protection file name"
        )
    write_private_file(path, data, replace=True, mode=mode)


def save_plain(path: str, manifest: Manifest) -> bytes:
    """Write ``manifest`` unencrypted (0600); returns its informational tag."""
    header = MAGIC + KIND_PLAIN
    body = manifest.canonical()
    write_atomic(path, header + body)
    return _crypto.state_tag(header + body)


def save_encrypted(path: str, manifest: Manifest, key: bytes) -> bytes:
    """Write ``manifest`` encrypted under ``key``; returns its state tag (16 bytes)."""
    header = MAGIC + KIND_ENCRYPTED
    blob = _crypto.seal_blob(key, header, manifest.canonical())
    write_atomic(path, header + blob, 0o644)
    return _crypto.state_tag(header + blob)


def tag_of(kind: bytes, body: bytes) -> bytes:
    """The tag identifying a protection file's content, plain or encrypted."""
    if kind == KIND_ENCRYPTED and len(body) < _crypto.NONCE_LEN + _crypto.TAG_LEN:
        # nonce + at least the GCM tag: anything shorter is a truncated file, not a state
        raise errors.IntegrityError("the protection file is truncated: seal the tree again")
    return _crypto.state_tag(MAGIC + kind + body)


def load_plain(path: str) -> Manifest:
    """Load a protection file that has not been encrypted yet (for addr/addf)."""
    kind, body = read_raw(path)
    if kind != KIND_PLAIN:
        raise errors.ConfigError(
            f"{path} is already encrypted; regions and files can only be added before "
            "'cloister fspf encrypt'",
            details=["start again with 'cloister fspf create'"],
        )
    return Manifest.parse(body, path)


def decrypt(path: str, kind: bytes, body: bytes, key: bytes) -> Manifest:
    """Decrypt an encrypted protection file body (tag already checked by the caller)."""
    if kind != KIND_ENCRYPTED:
        raise errors.IntegrityError(
            f"protection file {path} is not encrypted",
            details=["run 'cloister fspf encrypt' on it, and use the key and tag it prints"],
        )
    plain = _crypto.open_blob(key, MAGIC + kind, body)
    if plain is None:
        raise errors.IntegrityError(
            f"protection file {path} does not decrypt with the given key "
            "(fspf_key is wrong, or the file was altered)",
            details=["use the fspf_key printed by 'cloister seal' or 'cloister fspf encrypt'"],
        )
    return Manifest.parse(plain, path)
