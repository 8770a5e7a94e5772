"""Shared fixtures: a small source tree with a planted marker, sealed into a temp dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MARKER = "CLOISTER_PLANTED_MARKER_7f3a"

SOURCES = {
    "main.py": (
        "import sys\nimport app.core\n"
        "print('main ran', sys.argv[1:], app.core.MARK)\n"
        "if '--fail' in sys.argv:\n    app.core.explode()\n"
    ),
    "app/__init__.py": "",
    "app/__main__.py": "import sys\nprint('module ran', sys.argv[1:])\n",
    "app/core.py": (
        f"MARK = {MARKER!r}\n\n\ndef explode():\n"
        f"    raise RuntimeError('exploded ' + MARK)  # {MARKER}\n"
    ),
    "app/data/config.txt": f"config {MARKER}\n",
    "app/util.py": f"def helper():\n    return 'helper {MARKER}'\n",
    "lib/dep/__init__.py": "VALUE = 42\n",
}


@pytest.fixture
def src_tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for rel, text in SOURCES.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return src


def run_python(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (clean sys.modules/meta_path), never writing bytecode."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="")
    env.pop("PYTHONDONTWRITEBYTECODE")
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
    )


def scan_for_marker(root: Path, allowed: Path) -> list[str]:
    """Files below ``root`` (outside ``allowed``) holding the marker, and any __pycache__."""
    hits = []
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath).is_relative_to(allowed):
            continue
        hits += [os.path.join(dirpath, d) for d in dirnames if d == "__pycache__"]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if MARKER.encode() in Path(path).read_bytes():
                hits.append(path)
    return hits


RUNNER_CODE = """
import sys
from cloister import errors, fspf
try:
    tree = fspf.ProtectedTree.open(*sys.argv[1:4])
    fspf.run_main(tree, sys.argv[4], sys.argv[5:])
except errors.Error as err:
    print("refused:", err.message, *err.details, file=sys.stderr)
    sys.exit(4)
"""
