"""Helpers shared by every test layer: seed sessions and their template values."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent / "data"
SEED = DATA / "seed"

MEASUREMENT = "a" * 64
MEASUREMENT_REDIS = "b" * 64

SEED_VARIABLES = {
    "FLASK_SESSION": "flask-session-1",
    "REDIS_SESSION": "redis-session-1",
    "MRENCLAVE": MEASUREMENT,
    "MRENCLAVE_REDIS": MEASUREMENT_REDIS,
    "SCONE_FSPF_KEY": "0f" * 32,
    "SCONE_FSPF_TAG": "1e" * 16,
}


def seed_text(name: str) -> str:
    """The text of a seed session template (``flask`` or ``redis``)."""
    return (SEED / f"{name}.yml").read_text()


def disk_state(root: Path | str) -> frozenset[tuple[str, int, int]] | None:
    """Every file below ``root`` as (path, size, mtime_ns); ``None`` if ``root`` is absent.

    For "nothing reached the disk" checks: compare the state before and after
    what the test did, so a directory that was already there (an empty
    ``/tls`` on this machine) neither fails nor hides the test.
    """
    top = Path(root)
    if not top.exists():
        return None
    found: set[tuple[str, int, int]] = set()
    for path in (top, *top.rglob("*")):
        try:
            st = path.lstat()
        except OSError:
            continue
        found.add((str(path), st.st_size, st.st_mtime_ns))
    return frozenset(found)
