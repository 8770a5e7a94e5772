"""The LAS side of ``simulation`` evidence: a software platform key that signs claims."""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloister import errors
from cloister._files import write_private_file
from cloister.attest import _evidence
from cloister.attest.simulation._format import SIMULATION, sign_simulation

KEY_FILE = "platform-key.pem"


def load_or_create_platform_key(state: Path) -> Ed25519PrivateKey:
    """The platform key in ``state/platform-key.pem``, created (0600, dir 0700) if absent.

    Creation writes a private temporary file and hard-links it into place, so
    two LAS processes starting at once agree on one key and none is
    overwritten.  A key file readable by group or others is refused.
    """
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state / KEY_FILE
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private_file(path, pem, keep_existing=True)  # a racing LAS's key wins: use it
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise errors.ConfigError(
            f"platform key {path} has unsafe permissions {mode:04o}",
            details=[f"run: chmod 600 {path}"],
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise errors.ConfigError(
            f"platform key {path} is not a PEM private key",
            details=["move it away to create a new platform (its id changes)"],
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise errors.ConfigError(f"platform key {path} is not an Ed25519 key")
    return key


class SimulationQuoter:
    """Signs ``simulation`` evidence with the platform key kept in the LAS state directory."""

    evidence_type = SIMULATION

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key
        public = key.public_key()
        self.platform_id = _evidence.platform_id(_evidence.spki_der(public))
        self.public_key_pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def quote(self, *, measurement: str, fspf_tag: str | None, report_data_hex: str,
              uid: int, gid: int) -> bytes:
        return sign_simulation(self.key, measurement=measurement, fspf_tag=fspf_tag,
                               report_data_hex=report_data_hex, uid=uid, gid=gid)


def make_quoter(state: Path, options: Mapping[str, str]) -> SimulationQuoter:
    """The quoter for ``cloister las serve`` without hardware (no options)."""
    if options:
        raise errors.ConfigError(f"simulation evidence takes no options ({', '.join(options)})")
    return SimulationQuoter(load_or_create_platform_key(state))
