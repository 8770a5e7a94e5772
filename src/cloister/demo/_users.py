"""Who runs each demo service.

Started as root, ``cloister demo up`` runs Redis and the patient API each
under a uid of its own, and their sessions pin those uids: another local
user, or one service, cannot then pass for the other, nor read its memory.
Redis runs as the system account :data:`REDIS_ACCOUNT` (Debian's
redis-server package creates it; its encrypted volume is a FUSE mount, and
``fusermount`` refuses a uid without an account name), the API as
:data:`API_ID` (the uid compose and Helm give it; it mounts nothing).  That takes
what each uid must reach: its interpreter and this cloister installation
(readable by others), the demo directory traversable (0711), the CAS
certificate and the LAS socket (``public/``, the socket 0666), Redis's
data and ciphertext directories (its own), the sealed API tree (the API's).
Where the interpreter or the demo directory is out of other uids' reach
(e.g. a Python under ``/root``, a 0700 parent), where there is no
``redis`` account, and when not started as root,
both services run as the invoking user, whose uid the sessions pin, and
``up`` says so.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import cloister
from cloister.demo._layout import Layout
from cloister.runtime._volumes import CIPHER_SUFFIX, unmount

#: the account Redis runs as when the demo is started as root
REDIS_ACCOUNT = "redis"
#: (uid, gid) of the API when the demo is started as root
API_ID = (10002, 10002)


@dataclass(frozen=True)
class ServiceUsers:
    redis: tuple[int, int]
    api: tuple[int, int]
    #: why both run as the invoking user ("" when each has its own uid)
    shared_because: str = ""

    @property
    def separate(self) -> bool:
        return not self.shared_because


def _unreachable(path: Path) -> Path | None:
    """The first directory on the way to ``path`` that other users cannot traverse."""
    for part in [*reversed(path.parents), path]:
        try:
            mode = part.stat().st_mode
        except OSError:
            return part
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return part
    return None


def service_users(layout: Layout) -> ServiceUsers:
    """The uids (module docstring): separate ones only where they can work."""
    me = (os.getuid(), os.getgid())
    if os.geteuid() != 0:
        return ServiceUsers(me, me, "not started as root")
    package = Path(cloister.__file__).resolve().parent
    for what, path in (("the interpreter", Path(sys.executable).resolve().parent),
                       ("the cloister installation", package),
                       ("the demo directory", layout.root.parent)):
        blocked = _unreachable(path)
        if blocked is not None:
            return ServiceUsers(me, me, f"{what} is below {blocked}, which other users "
                                        "cannot enter")
    try:
        account = pwd.getpwnam(REDIS_ACCOUNT)
    except KeyError:
        return ServiceUsers(me, me, f"there is no {REDIS_ACCOUNT!r} account for Redis "
                                    "(apt-get install redis-server creates it)")
    return ServiceUsers((account.pw_uid, account.pw_gid), API_ID)


def _chown_tree(path: Path, ids: tuple[int, int]) -> None:
    os.chown(path, *ids, follow_symlinks=False)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), *ids, follow_symlinks=False)


def hand_over(layout: Layout, users: ServiceUsers) -> Path:
    """Give each service's uid what it needs (after the CAS started and the tree was
    sealed); the CAS certificate path the services pin."""
    if not users.separate:
        return layout.cas_cert
    layout.root.chmod(0o711)  # traversable, not listable: the socket, public/, their dirs
    layout.public.mkdir(mode=0o755, exist_ok=True)
    layout.public.chmod(0o755)
    pinned = layout.public / "cas-ca.pem"
    shutil.copyfile(layout.cas_cert, pinned)
    pinned.chmod(0o644)
    unmount(str(layout.redis_data))  # a mount an earlier Redis left: root may not enter it
    for volume in (layout.redis_data, Path(str(layout.redis_data) + CIPHER_SUFFIX)):
        volume.mkdir(mode=0o700, exist_ok=True)
        _chown_tree(volume, users.redis)
    _chown_tree(layout.fspf, users.api)  # ciphertext: the key comes from the CAS
    return pinned
