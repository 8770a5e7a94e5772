"""Injected files of native programs: only on a memory filesystem, never through a link
or into a directory another user controls."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloister import errors
from cloister.runtime._config import InjectedFile
from cloister.runtime._native import check_memory_backed, write_files

SHM = Path("/dev/shm")


@pytest.fixture
def shm_dir(tmp_path: Path) -> Iterator[Path]:
    if not SHM.is_dir():
        pytest.skip("/dev/shm is not available on this machine")
    base = SHM / f"cloister-unit-{tmp_path.name}"
    yield base
    shutil.rmtree(base, ignore_errors=True)
    if base.is_symlink():
        base.unlink()


def test_files_are_written_with_their_modes_in_private_directories(shm_dir: Path) -> None:
    path = shm_dir / "tls" / "redis.key"
    write_files([InjectedFile(str(path), 0o600, b"KEY")])
    assert path.read_bytes() == b"KEY"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((shm_dir / "tls").stat().st_mode) == 0o700


def test_an_old_file_is_replaced_not_reused(shm_dir: Path) -> None:
    path = shm_dir / "k"
    shm_dir.mkdir(mode=0o700)
    path.write_bytes(b"old")
    os.chmod(path, 0o666)
    before = path.stat().st_ino
    write_files([InjectedFile(str(path), 0o400, b"new")])
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o400
    assert path.stat().st_ino != before


def test_a_link_to_a_disk_directory_is_refused(shm_dir: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    shm_dir.symlink_to(disk)
    with pytest.raises(errors.LaunchError, match="not on a memory filesystem"):
        write_files([InjectedFile(str(shm_dir / "tls" / "k"), 0o600, b"SECRET")])
    assert not any(disk.rglob("k")), "the secret reached the disk"


def test_a_directory_of_another_user_is_refused(shm_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a directory owned by another user")
    shm_dir.mkdir(mode=0o777)
    os.chmod(shm_dir, 0o777)
    os.chown(shm_dir, 1001, 1001)
    with pytest.raises(errors.LaunchError, match="belongs to another user"):
        write_files([InjectedFile(str(shm_dir / "k"), 0o600, b"SECRET")])
    assert not (shm_dir / "k").exists()


def test_a_world_writable_directory_is_refused(shm_dir: Path) -> None:
    shm_dir.mkdir()
    os.chmod(shm_dir, 0o777)
    with pytest.raises(errors.LaunchError, match="others may replace"):
        write_files([InjectedFile(str(shm_dir / "k"), 0o600, b"SECRET")])


def test_disk_paths_are_refused_before_anything_is_created(tmp_path: Path) -> None:
    target = tmp_path / "new-dir" / "k"
    with pytest.raises(errors.LaunchError, match="not a memory filesystem"):
        check_memory_backed([InjectedFile(str(target), 0o600, b"SECRET")])
    with pytest.raises(errors.LaunchError, match="not on a memory filesystem"):
        write_files([InjectedFile(str(target), 0o600, b"SECRET")])
    assert not target.exists()
