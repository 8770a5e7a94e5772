"""The runtime files a measurement covers are listed as the documented walk lists them:
every ``*.py`` below the package, through directory links, without ``__pycache__``."""

from __future__ import annotations

import os
from pathlib import Path

from cloister.attest._measure import runtime_dir, runtime_files


def _walked(root: Path) -> list[tuple[str, Path]]:
    """The reference: ``os.walk(followlinks=True)`` and ``os.path.isfile`` (the LAS's old
    listing, ~2x slower than the directory entries it now reads)."""
    items = []
    for top, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        rel_top = os.path.relpath(top, root)
        for name in files:
            path = os.path.join(top, name)
            if name.endswith(".py") and os.path.isfile(path):
                rel = name if rel_top == "." else f"{rel_top}/{name}"
                items.append((f"cloister/{rel}", Path(path)))
    items.sort(key=lambda item: item[0].encode("utf-8"))
    return items


def test_the_listing_is_the_walk_of_links_files_and_odd_names(tmp_path: Path) -> None:
    root = tmp_path / "cloister"
    (root / "sub" / "__pycache__").mkdir(parents=True)
    (root / "a.py").write_text("a")
    (root / "sub" / "b.py").write_text("b")
    (root / "sub" / "__pycache__" / "c.py").write_text("cached")
    (root / "sub" / "notes.txt").write_text("not python")
    (root / "dir.py").mkdir()  # a directory named like a module is entered, not listed
    (root / "dir.py" / "d.py").write_text("d")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "e.py").write_text("e")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "f.py").symlink_to(elsewhere / "e.py")
    (root / "broken.py").symlink_to(tmp_path / "missing.py")
    (root / "Zeta.py").write_text("z")
    (root / "é.py").write_text("non-ascii sorts by its UTF-8 bytes")
    listed = runtime_files(root)
    assert listed == _walked(root)
    assert [name for name, _ in listed] == [
        "cloister/Zeta.py", "cloister/a.py", "cloister/dir.py/d.py", "cloister/f.py",
        "cloister/linked/e.py", "cloister/sub/b.py", "cloister/é.py"]


def test_the_installed_runtime_lists_alike() -> None:
    assert runtime_files(runtime_dir()) == _walked(runtime_dir())
