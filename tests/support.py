"""Helpers shared by every test layer: seed sessions and their template values."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cloister

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


def every_uid_python(venv: Path) -> str:
    """A Python every uid can run, with this cloister (skips the test if there is none).

    The test interpreter may live where another uid cannot reach it (pyenv under
    /root): the distribution's python3 in a venv at ``venv`` (in a directory
    others can enter) that sees this installation's packages.
    """
    system = shutil.which("python3", path="/usr/bin:/bin")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if system is None or subprocess.run(
            [system, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
            capture_output=True, text=True).stdout.strip() != version:
        pytest.skip(f"no /usr/bin/python3 {version} that another uid could run")
    subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    ours = next(p for p in map(Path, sys.path) if p.name == "site-packages" and
                str(p).startswith(sys.prefix))
    (site / "cloister-test.pth").write_text(f"import site; site.addsitedir({str(ours)!r})\n")
    python = str(venv / "bin" / "python")
    if not _importable_by_nobody(python):
        # this installation is where another uid cannot reach it (a clone under /root,
        # mode 0700): the venv gets hard links of its packages and a copy of cloister
        shared = venv.parent / "site-packages"
        try:
            shutil.copytree(ours, shared, symlinks=True, copy_function=os.link,
                            ignore=shutil.ignore_patterns("__editable__*"))
        except OSError as err:
            pytest.skip(f"{ours} is not readable by another uid and cannot be linked "
                        f"into {venv.parent}: {err}")
        shutil.copytree(Path(cloister.__file__).parent, shared / "cloister",
                        dirs_exist_ok=True)
        (site / "cloister-test.pth").write_text(
            f"import site; site.addsitedir({str(shared)!r})\n")
        assert _importable_by_nobody(python), f"uid {_NOBODY} cannot import {shared}/cloister"
    return python


_NOBODY = 65534


def _importable_by_nobody(python: str) -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return True  # the tests as another uid skip without root: nothing to check
    done = subprocess.run(["setpriv", f"--reuid={_NOBODY}", f"--regid={_NOBODY}",
                           "--clear-groups", python, "-c", "import cloister.cli"],
                          capture_output=True, timeout=60)
    return done.returncode == 0
