"""Seal a package tree, then import and run it from the sealed tree."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from fspf_testlib import MARKER, run_python, scan_for_marker, src_tree

from cloister import errors, fspf

RUNNER = """
import sys, json
from cloister import fspf
fspf_path, key, tag, target, mode = sys.argv[1:6]
tree = fspf.ProtectedTree.open(fspf_path, key, tag)
fspf.run_main(tree, target, sys.argv[6:], module=(mode == "module"),
              show_source="--show-source" in sys.argv)
"""


def _seal(src: Path, tmp_path: Path) -> fspf.SealResult:
    return fspf.seal(str(src), str(tmp_path / "sealed"), authenticate=["lib"])


def test_sealed_tree_has_source_names_and_no_plaintext(src_tree: Path, tmp_path: Path) -> None:
    result = _seal(src_tree, tmp_path)
    out = tmp_path / "sealed"
    assert (out / "main.py").is_file() and (out / "app" / "core.py").is_file()
    assert (out / "app" / "core.py.code").is_file()  # sealed code object
    assert Path(result.fspf_path) == out / "fspf.pb"
    assert len(result.key_hex) == 64 and len(result.tag_hex) == 32
    assert scan_for_marker(out, allowed=src_tree) == []
    # the authenticated region stays readable plaintext
    assert (out / "lib" / "dep" / "__init__.py").read_text() == "VALUE = 42\n"


def test_run_main_script_with_real_traceback(src_tree: Path, tmp_path: Path) -> None:
    result = _seal(src_tree, tmp_path)
    main = str(tmp_path / "sealed" / "main.py")
    proc = run_python(RUNNER, result.fspf_path, result.key_hex, result.tag_hex, main, "path", "x")
    assert proc.returncode == 0, proc.stderr
    assert f"main ran ['x'] {MARKER}" in proc.stdout

    proc = run_python(
        RUNNER, result.fspf_path, result.key_hex, result.tag_hex, main, "path", "--fail"
    )
    assert proc.returncode == 1
    # (f) the traceback names file and line of the sealed code, never its decrypted source
    assert f'File "{tmp_path}/sealed/app/core.py", line 5, in explode' in proc.stderr
    assert "raise RuntimeError" not in proc.stderr and MARKER not in proc.stderr.split(
        "RuntimeError: exploded")[0], proc.stderr
    assert scan_for_marker(tmp_path, allowed=src_tree) == []

    # the policy's debug switch (debug_tracebacks): the real line, read from memory
    proc = run_python(
        RUNNER, result.fspf_path, result.key_hex, result.tag_hex, main, "path", "--fail",
        "--show-source",
    )
    assert f"raise RuntimeError('exploded ' + MARK)  # {MARKER}" in proc.stderr


def test_run_module_with_dash_m(src_tree: Path, tmp_path: Path) -> None:
    result = _seal(src_tree, tmp_path)
    proc = run_python(
        RUNNER,
        result.fspf_path,
        result.key_hex,
        result.tag_hex,
        "app",
        "module",
        "y",
        cwd=tmp_path / "sealed",
    )
    assert proc.returncode == 0, proc.stderr
    assert "module ran ['y']" in proc.stdout


def test_getsource_resources_and_imports(src_tree: Path, tmp_path: Path) -> None:
    result = _seal(src_tree, tmp_path)
    code = """
import sys, json, inspect, linecache, importlib.resources as res
from cloister import fspf
tree = fspf.ProtectedTree.open(*sys.argv[1:4])
fspf.install_importer(tree, show_source=True)
sys.path.insert(0, sys.argv[4]); sys.path.insert(0, sys.argv[4] + "/lib")
import app.core, app.util, dep
files = res.files("app")
data = files.joinpath("data", "config.txt")
with res.as_file(data) as real:
    as_file_text = real.read_text()
print(json.dumps({
  "getsource": inspect.getsource(app.util.helper),
  "line": linecache.getline(app.core.__file__, 1),
  "resource": data.read_text(),
  "as_file": as_file_text,
  "dep": dep.VALUE,
  "listing": sorted(p.name for p in files.iterdir()),
  "file": app.core.__file__,
  "dont_write": sys.dont_write_bytecode,
  "source_via_loader": app.core.__loader__.get_source("app.core"),
}))
"""
    proc = run_python(
        code, result.fspf_path, result.key_hex, result.tag_hex, str(tmp_path / "sealed")
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["getsource"] == f"def helper():\n    return 'helper {MARKER}'\n"
    assert got["line"] == f"MARK = {MARKER!r}\n"
    assert got["resource"] == got["as_file"] == f"config {MARKER}\n"
    assert got["dep"] == 42
    assert got["listing"] == ["__init__.py", "__main__.py", "core.py", "data", "util.py"]
    assert got["file"] == f"{tmp_path}/sealed/app/core.py"
    assert got["dont_write"] is True
    assert got["source_via_loader"] == (src_tree / "app" / "core.py").read_text()
    assert scan_for_marker(tmp_path, allowed=src_tree) == []


def test_code_object_of_other_magic_falls_back_to_source(src_tree: Path, tmp_path: Path) -> None:
    result = _seal(src_tree, tmp_path)
    tree = fspf.ProtectedTree.open(result.fspf_path, result.key_hex, result.tag_hex)
    assert tree.code("/app/core.py") is not None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(importlib.util, "MAGIC_NUMBER", b"\x00\x00\r\n")
        assert tree.code("/app/core.py") is None  # the loader then compiles the source


def test_chunked_reads_need_only_their_chunks(tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.mkdir()
    payload = bytes(range(256)) * 1000  # 256000 bytes
    (src / "blob.bin").write_bytes(payload)
    pb = str(tmp_path / "fs.pb")
    fspf.create(pb)
    fspf.add_region(pb, "/", "encrypted", kernel=str(tmp_path / "enc"), chunk=4096)
    fspf.add_files(pb, "/", str(src), str(tmp_path / "enc"))
    key, tag = fspf.encrypt(pb)
    tree = fspf.ProtectedTree.open(pb, key, tag)
    assert tree.read("/blob.bin") == payload
    # corrupt a late chunk: an early read still works, the late one is refused
    enc = tmp_path / "enc" / "blob.bin"
    data = bytearray(enc.read_bytes())
    data[-100] ^= 1
    enc.write_bytes(bytes(data))
    with tree.open_file("/blob.bin") as fh:
        assert fh.read(5000) == payload[:5000]
        fh.seek(100_000)
        assert fh.read(10) == payload[100_000:100_010]
    with tree.open_file("/blob.bin") as fh, pytest.raises(errors.IntegrityError, match="chunk 62"):
        fh.seek(len(payload) - 10)
        fh.read()


__all__ = ["src_tree"]  # the fixture, imported from fspf_testlib
