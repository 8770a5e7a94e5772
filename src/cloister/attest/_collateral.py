"""Reading collateral (certificates, TCB info, CRLs) from a directory, outside any verifier."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from cloister import errors
from cloister.attest._plugin import MAX_COLLATERAL_BYTES, Collateral


def load_collateral(directory: Path | None, *, limit: int = MAX_COLLATERAL_BYTES) -> Collateral:
    """Every regular file under ``directory`` (recursively) as :class:`Collateral`.

    ``None`` gives empty collateral.  Symbolic links are not followed out of
    the tree; more than ``limit`` bytes in total is refused.
    """
    if directory is None:
        return Collateral()
    if not directory.is_dir():
        raise errors.ConfigError(f"collateral directory {directory} does not exist",
                                 details=["pass a directory of certificates and TCB files"])
    files: dict[str, bytes] = {}
    total = 0
    root = directory.resolve()
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        total += path.stat().st_size
        if total > limit:
            raise errors.ConfigError(f"collateral in {directory} exceeds {limit} bytes",
                                     details=["keep only the certificates and collateral needed"])
        files[path.relative_to(root).as_posix()] = path.read_bytes()
    return Collateral(MappingProxyType(files))
