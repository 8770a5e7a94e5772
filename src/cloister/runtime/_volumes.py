"""Encrypted volumes: a directory whose files reach the disk only encrypted.

A policy's ``volumes:`` (SCONE's name) gives a service a directory — Redis's
data directory, say — backed by ciphertext next to it (``PATH`` shows the
files, ``PATH.cloister-encrypted`` holds them encrypted) under a 32-byte key
the CAS generates, keeps, and releases only after attestation.  cloister
mounts it with gocryptfs (FUSE; AES-256-GCM per file block, encrypted names)
before the program starts; the key is passed on a pipe, never on a command
line, in an environment or in a file.

Stated plainly: while mounted, the plaintext is visible to this user and to
the host's root through the mount, as any FUSE file system is; what the
volume protects against is the disk (a copied disk, a backup, a stopped
host).  It does not detect a rollback of the ciphertext to an older state.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from cloister import errors

CIPHER_SUFFIX = ".cloister-encrypted"
_INSTALL = "install gocryptfs and fuse3 (apt-get install gocryptfs fuse3)"


@dataclass(frozen=True, repr=False)
class VolumeMount:
    name: str
    path: str
    key: str = field(repr=False)  # 64 hex

    def __repr__(self) -> str:
        return f"VolumeMount({self.name} at {self.path})"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise errors.LaunchError(f"encrypted volumes need {name}: {_INSTALL}")
    return found


#: gocryptfs's exit codes worth a sentence (its documented ones)
_EXIT_REASONS = {12: "wrong key", 10: "the mount point is not empty", 23: "cannot read its config"}


def _run(argv: Sequence[str], key: str, what: str) -> None:
    # no pipes on stdout/stderr: the mounting daemon would hold them open for its lifetime
    done = subprocess.run(
        list(argv), input=(key + "\n").encode(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, timeout=60, check=False,
    )
    if done.returncode != 0:
        reason = _EXIT_REASONS.get(done.returncode, f"gocryptfs exit code {done.returncode}")
        raise errors.LaunchError(f"cannot {what}: {reason}")


def _mounted(path: str) -> bool:
    """True when ``path`` is a mount point — also one of another user's FUSE mounts, which
    even root may not stat (``os.path.ismount`` then says False): the kernel's table decides."""
    if os.path.ismount(path):
        return True
    target = os.path.abspath(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
            for line in table:
                fields = line.split(" ")
                # the mount point is field 5, with space, tab, newline, backslash as octal
                if len(fields) > 4 and re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)),
                                              fields[4]) == target:
                    return True
    except OSError:
        return False
    return False


def unmount(path: str) -> None:
    """Unmount a volume mounted at ``path`` (nothing if it is not a mount point)."""
    if _mounted(path):
        fusermount = shutil.which("fusermount3") or _tool("fusermount")
        done = subprocess.run([fusermount, "-u", path], capture_output=True, check=False)
        if done.returncode != 0:
            raise errors.LaunchError(
                f"cannot unmount the volume at {path} (is a program still using it?)"
            )


def mount_volumes(volumes: Sequence[VolumeMount]) -> None:
    """Mount every volume (creating its ciphertext on first use); refuse a wrong key."""
    if not volumes:
        return
    gocryptfs = _tool("gocryptfs")
    for volume in volumes:
        cipher = volume.path + CIPHER_SUFFIX
        os.makedirs(cipher, mode=0o700, exist_ok=True)
        os.makedirs(volume.path, mode=0o700, exist_ok=True)
        unmount(volume.path)  # a mount left by an earlier run: the key decides again
        if os.listdir(volume.path):
            raise errors.LaunchError(
                f"volume {volume.name}: {volume.path} holds plaintext files; move them away "
                "(the volume's files live encrypted in " + cipher + ")"
            )
        if not os.path.exists(os.path.join(cipher, "gocryptfs.conf")):
            # the key is 256 random bits: key stretching buys nothing, so scrypt stays cheap
            _run([gocryptfs, "-init", "-q", "-scryptn", "10", cipher], volume.key,
                 f"create volume {volume.name} in {cipher}")
        _run([gocryptfs, "-q", "-nosyslog", cipher, volume.path], volume.key,
             f"open volume {volume.name} from {cipher}")
