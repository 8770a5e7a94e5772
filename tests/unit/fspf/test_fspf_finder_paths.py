"""The tree's finder answers every import: what it remembers of import path entries, and
the host check for files added after sealing, hold with an in-memory overlay installed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fspf_testlib import run_python, src_tree

from cloister import fspf
from cloister.fspf._importer import TreeLoader

__all__ = ["src_tree"]


@pytest.fixture
def sealed(src_tree: Path, tmp_path: Path) -> Iterator[tuple[fspf.TreeFinder, Path]]:
    out = tmp_path / "sealed"
    result = fspf.seal(str(src_tree), str(out))
    tree = fspf.ProtectedTree.open(result.fspf_path, result.key_hex, result.tag_hex)
    finder = fspf.install_importer(tree)
    try:
        yield finder, out
    finally:
        fspf.uninstall_importer(finder)


def test_a_relative_entry_follows_the_working_directory(sealed: tuple[fspf.TreeFinder, Path],
                                                        tmp_path: Path) -> None:
    finder, out = sealed
    before = os.getcwd()
    try:
        os.chdir(out)
        spec = finder.find_spec("main", [""])
        assert spec is not None and isinstance(spec.loader, TreeLoader)
        os.chdir(tmp_path)  # "" is now a directory outside the tree
        assert finder.find_spec("main", [""]) is None
        os.chdir(out / "app")
        spec = finder.find_spec("core", ["."])
        assert spec is not None and spec.origin == str(out / "app" / "core.py")
    finally:
        os.chdir(before)


def test_an_absolute_entry_answers_the_same_every_time(sealed: tuple[fspf.TreeFinder, Path],
                                                       tmp_path: Path) -> None:
    finder, out = sealed
    for _ in range(3):
        spec = finder.find_spec("main", [str(out)])
        assert spec is not None and spec.origin == str(out / "main.py")
        assert finder.find_spec("main", [str(tmp_path)]) is None


def test_a_file_added_after_sealing_is_refused_with_an_overlay_installed(
        src_tree: Path, tmp_path: Path) -> None:
    """The check asks the host's filesystem (where an ordinary finder would import from),
    not the overlay that serves the tree's files from memory."""
    result = fspf.seal(str(src_tree), str(tmp_path / "sealed"))
    (tmp_path / "sealed" / "evil.py").write_text("print('HOST CODE RAN')\n")
    code = (
        "import sys\nfrom cloister import errors, fspf\n"
        "from cloister.runtime._memfs import MemFS\n"
        f"tree = fspf.ProtectedTree.open({result.fspf_path!r}, {result.key_hex!r}, "
        f"{result.tag_hex!r}, check=False)\n"
        "overlay = MemFS()\noverlay.add_tree(tree)\noverlay.install()\n"
        "fspf.install_importer(tree)\n"
        f"sys.path.insert(0, {str(tmp_path / 'sealed')!r})\n"
        "try:\n    import evil\nexcept errors.IntegrityError as err:\n    print('refused:', err)\n"
    )
    done = run_python(code)
    assert "HOST CODE RAN" not in done.stdout, done.stderr
    assert "evil.py is in a protected region but not listed" in done.stdout, done.stderr
    assert "refusing to import it" in done.stdout
