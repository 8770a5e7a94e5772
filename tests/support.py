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
