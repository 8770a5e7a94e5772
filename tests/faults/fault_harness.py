"""Helpers of the fault suite: the integration harness, a tmpfs mount, JSON error checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
if str(INTEGRATION) not in sys.path:  # cas_harness / run_harness are shared with integration/
    sys.path.insert(0, str(INTEGRATION))

from cas_harness import CA_SESSION  # noqa: E402 - after the path insert

REPO = Path(__file__).resolve().parents[2]

SESSION = CA_SESSION


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (skips, saying why, when mounting is refused)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """A file in ``directory`` grown until the filesystem refuses more (ENOSPC)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    chunk = b"\0" * 65536
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError:
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)
    return filler


def json_error(status: int, body: bytes) -> dict:  # type: ignore[type-arg]
    """The ``error`` object of a CAS error answer; fails on anything else."""
    doc = json.loads(body)
    err = doc["error"]
    assert set(err) == {"code", "message", "details"}, doc
    assert isinstance(err["message"], str) and err["message"], doc
    assert "Traceback" not in body.decode(errors="replace")
    return dict(err)
