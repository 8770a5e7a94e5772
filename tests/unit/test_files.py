"""The one private-file writer: 0600 whatever the umask, never through a link, all or nothing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cloister._files import write_private_file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_mode_is_exact_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private_file(tmp_path / "key", b"k")
        write_private_file(tmp_path / "cert", b"c", mode=0o644)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "key") == 0o600 and _mode(tmp_path / "cert") == 0o644
    os.umask(0o077)
    try:
        write_private_file(tmp_path / "pub", b"p", mode=0o644)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "pub") == 0o644


def test_existing_file_or_link_is_never_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    link = tmp_path / "link"
    link.symlink_to(victim)
    with pytest.raises(FileExistsError):
        write_private_file(link, b"attacker")
    with pytest.raises(FileExistsError):
        write_private_file(victim, b"again")
    write_private_file(link, b"new", replace=True)  # replaces the link, not its target
    assert victim.read_bytes() == b"keep me"
    assert not link.is_symlink() and link.read_bytes() == b"new"


def test_keep_existing_lets_the_first_writer_win(tmp_path: Path) -> None:
    path = tmp_path / "platform.key"
    assert write_private_file(path, b"first", keep_existing=True) is True
    assert write_private_file(path, b"second", keep_existing=True) is False
    assert path.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["platform.key"]  # no temp left
