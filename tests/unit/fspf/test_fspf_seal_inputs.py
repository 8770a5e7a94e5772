"""Sealing refuses a source it cannot take whole, and leaves no half-sealed output."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cloister import errors, fspf


def _src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "main.py").write_text("print('x')\n")
    (src / "pkg" / "__init__.py").write_text("")
    return src


def test_a_dangling_link_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    src = _src(tmp_path)
    (src / "pkg" / "gone.py").symlink_to(tmp_path / "nowhere.py")
    with pytest.raises(errors.ConfigError, match="dangling symbolic link"):
        fspf.seal(str(src), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_fifo_is_refused_instead_of_hanging(tmp_path: Path) -> None:
    src = _src(tmp_path)
    os.mkfifo(src / "pkg" / "pipe")
    with pytest.raises(errors.ConfigError, match="not a regular file"):
        fspf.seal(str(src), str(tmp_path / "out"))


def _seal_without_override(src: Path, out: Path) -> str:
    """Seal in a child without CAP_DAC_OVERRIDE (root reads everything otherwise)."""
    if os.geteuid() != 0:
        code = ("from cloister import errors, fspf\n"
                f"try:\n    fspf.seal({str(src)!r}, {str(out)!r})\n"
                "except errors.ConfigError as e:\n    print(e.message)\n")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stdout
    if shutil.which("capsh") is None:
        pytest.skip("root without capsh (libcap2-bin): cannot make a file unreadable")
    code = ("from cloister import errors, fspf\n"
            f"try:\n    fspf.seal({str(src)!r}, {str(out)!r})\n"
            "except errors.ConfigError as e:\n    print(e.message)\n")
    return subprocess.run(
        ["capsh", "--drop=cap_dac_override,cap_dac_read_search", "--", "-c",
         f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"],
        capture_output=True, text=True, check=True,
    ).stdout


def test_an_unreadable_directory_is_refused_not_skipped(tmp_path: Path) -> None:
    src = _src(tmp_path)
    secret_dir = src / "pkg" / "hidden"
    secret_dir.mkdir()
    (secret_dir / "mod.py").write_text("X = 1\n")
    os.chmod(secret_dir, 0)
    try:
        message = _seal_without_override(src, tmp_path / "out")
    finally:
        os.chmod(secret_dir, 0o700)
    assert "sealed whole or not at all" in message
    assert not (tmp_path / "out").exists()


def test_a_failure_midway_empties_an_existing_out_directory(tmp_path: Path) -> None:
    src = _src(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (src / "zz_last.py").write_text("y = 2\n")
    os.chmod(src / "zz_last.py", 0)
    try:
        message = _seal_without_override(src, out)
    finally:
        os.chmod(src / "zz_last.py", 0o600)
    assert "cannot read" in message and "zz_last.py" in message
    assert list(out.iterdir()) == []


def test_fspf_create_never_replaces_a_device_or_a_link(tmp_path: Path) -> None:
    link = tmp_path / "fs.fspf"
    link.symlink_to(tmp_path / "target")
    for path in (str(link), os.devnull):
        with pytest.raises(errors.ConfigError, match="not a regular file"):
            fspf.create(path)
    assert not (tmp_path / "target").exists()
