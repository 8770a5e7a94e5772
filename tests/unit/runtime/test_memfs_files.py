"""The overlay serves injected files and sealed trees to ordinary file APIs, read-only."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloister import errors, fspf
from cloister.runtime._memfs import MemFS

SECRET = b"injected-secret-value\n"


@pytest.fixture
def sealed(tmp_path: Path) -> tuple[fspf.ProtectedTree, Path]:
    src = tmp_path / "src"
    (src / "conf").mkdir(parents=True)
    (src / "conf" / "app.cfg").write_text("setting = 1\n")
    (src / "main.py").write_text("print('hi')\n")
    out = tmp_path / "sealed"
    result = fspf.seal(str(src), str(out))
    return fspf.ProtectedTree.open(result.fspf_path, result.key_hex, result.tag_hex), out


@pytest.fixture
def overlay(sealed: tuple[fspf.ProtectedTree, Path]) -> Iterator[MemFS]:
    fs = MemFS()
    fs.add_file("/memfs-test-inject/secret.txt", SECRET, 0o400)
    fs.add_tree(sealed[0])
    fs.install()
    try:
        yield fs
    finally:
        fs.uninstall()


def test_injected_file_via_every_read_api(overlay: MemFS) -> None:
    path = "/memfs-test-inject/secret.txt"
    with open(path, "rb") as fh:
        assert fh.read() == SECRET
    with open(path) as fh:
        assert fh.read() == SECRET.decode()
    assert pathlib.Path(path).read_bytes() == SECRET
    assert pathlib.Path(path).read_text() == SECRET.decode()
    assert os.path.exists(path) and os.path.isfile(path) and not os.path.isdir(path)
    assert os.path.isdir("/memfs-test-inject") and pathlib.Path(path).is_file()
    assert os.stat(path).st_size == len(SECRET) and (os.stat(path).st_mode & 0o777) == 0o400
    assert os.listdir("/memfs-test-inject") == ["secret.txt"]
    with os.scandir("/memfs-test-inject") as it:
        assert [(e.name, e.is_file()) for e in it] == [("secret.txt", True)]


def test_writes_to_overlaid_paths_are_refused(
    overlay: MemFS, sealed: tuple[fspf.ProtectedTree, Path]
) -> None:
    for path in ("/memfs-test-inject/secret.txt", str(sealed[1] / "conf" / "app.cfg")):
        for mode in ("w", "a", "r+", "wb"):
            with pytest.raises(
                PermissionError, match="provided in memory by cloister and is read-only"
            ):
                open(path, mode).close()
        with pytest.raises(PermissionError):
            pathlib.Path(path).write_text("x")


def test_sealed_tree_is_served_decrypted(
    overlay: MemFS, sealed: tuple[fspf.ProtectedTree, Path]
) -> None:
    out = sealed[1]
    cfg = out / "conf" / "app.cfg"
    assert cfg.read_text() == "setting = 1\n"
    assert os.path.getsize(cfg) == len("setting = 1\n")
    assert sorted(os.listdir(out)) == ["conf", "main.py"]  # no ciphertext companions
    assert sorted(p.name for p in out.iterdir()) == ["conf", "main.py"]


def test_unlisted_file_in_protected_region_is_refused(
    overlay: MemFS, sealed: tuple[fspf.ProtectedTree, Path]
) -> None:
    planted = sealed[1] / "conf" / "planted.cfg"
    overlay.uninstall()
    planted.write_text("evil = 1\n")
    overlay.install()
    with pytest.raises(errors.IntegrityError, match="not listed in the protection file"):
        open(planted).close()


def test_paths_outside_the_overlay_are_untouched(overlay: MemFS, tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    with open(plain, "w") as fh:
        fh.write("ok")
    assert plain.read_text() == "ok" and os.stat(plain).st_size == 2


def test_os_open_reads_the_verified_bytes_and_refuses_writes(
    overlay: MemFS, sealed: tuple[fspf.ProtectedTree, Path]
) -> None:
    fd = os.open("/memfs-test-inject/secret.txt", os.O_RDONLY)
    try:
        assert os.read(fd, 100) == SECRET
    finally:
        os.close(fd)
    cfg = sealed[1] / "conf" / "app.cfg"
    fd = os.open(cfg, os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b"setting = 1\n"  # plaintext, not the ciphertext on disk
    finally:
        os.close(fd)
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC):
        with pytest.raises(PermissionError):
            os.open(cfg, flags)


def test_double_slash_paths_are_overlaid_too(overlay: MemFS) -> None:
    with open("//memfs-test-inject/secret.txt", "rb") as fh:
        assert fh.read() == SECRET


def test_new_files_in_a_protected_region_are_refused(
    overlay: MemFS, sealed: tuple[fspf.ProtectedTree, Path]
) -> None:
    """Writing a new file next to sealed code would put plaintext into the sealed tree."""
    new = sealed[1] / "conf" / "written.json"
    with pytest.raises(PermissionError, match="protected by cloister's file shield"):
        open(new, "w").close()
    with pytest.raises(PermissionError, match="protected by cloister's file shield"):
        os.open(new, os.O_WRONLY | os.O_CREAT)
    assert not new.exists()
