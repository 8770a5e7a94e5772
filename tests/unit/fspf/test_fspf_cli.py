"""The fspf tools and `cloister seal`, run as a user runs them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from fspf_testlib import MARKER, scan_for_marker, src_tree

from cloister import fspf

__all__ = ["src_tree"]
CLOISTER = [str(Path(sys.executable).parent / "cloister")]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLOISTER, *args], capture_output=True, text=True, cwd=cwd, check=False)


def test_scone_flow_with_awk_fields(src_tree: Path, tmp_path: Path) -> None:
    pb = tmp_path / "fs.fspf"
    enc = tmp_path / "encrypted-files"
    created = _run("fspf", "create", str(pb))
    assert created.returncode == 0, created.stderr
    assert re.fullmatch(
        rf"Created empty file system protection file in {pb}\. AES-GCM tag: [0-9a-f]{{32}}\n",
        created.stdout,
    )
    assert _run("fspf", "addr", str(pb), "/", "--kernel", "/", "--not-protected").returncode == 0
    assert (
        _run("fspf", "addr", str(pb), f"{enc}/", "--kernel", str(enc), "--encrypted").returncode
        == 0
    )
    addf = _run("fspf", "addf", str(pb), f"{enc}/", str(src_tree), str(enc))
    assert addf.returncode == 0, addf.stderr
    encrypted = _run("fspf", "encrypt", str(pb))
    assert encrypted.returncode == 0, encrypted.stderr
    keytag = tmp_path / "keytag"
    keytag.write_text(encrypted.stdout)
    tag = subprocess.run(
        ["awk", "{print $9}", str(keytag)], capture_output=True, text=True, check=True
    ).stdout.strip()
    key = subprocess.run(
        ["awk", "{print $11}", str(keytag)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert re.fullmatch("[0-9a-f]{32}", tag) and re.fullmatch("[0-9a-f]{64}", key)
    assert encrypted.stdout == (
        f"Encrypted file system protection file {pb} AES-GCM tag: {tag} key: {key}\n"
    )
    assert _run("fspf", "show", "--tag", str(pb)).stdout.strip() == tag
    shown = _run("fspf", "show", str(pb), key)
    assert f"file {enc}/app/core.py" in shown.stdout and key not in shown.stdout
    tree = fspf.ProtectedTree.open(str(pb), key, tag)
    assert MARKER in tree.read(f"{enc}/app/core.py").decode()
    assert scan_for_marker(tmp_path, allowed=src_tree) == []


def test_addf_to_encrypted_region_needs_out_dir(src_tree: Path, tmp_path: Path) -> None:
    pb = tmp_path / "fs.fspf"
    _run("fspf", "create", str(pb))
    _run("fspf", "addr", str(pb), "/", "--kernel", str(tmp_path / "e"), "--encrypted")
    proc = _run("fspf", "addf", str(pb), "/", str(src_tree))
    assert proc.returncode != 0
    assert proc.stderr.startswith("cloister: error: region / is encrypted: give OUT_DIR")
    assert "Traceback" not in proc.stderr


def test_seal_prints_three_policy_lines(src_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "sealed"
    proc = _run("seal", str(src_tree), "--out", str(out), "--authenticate", "lib")
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.splitlines()[-3:]
    assert last[0] == f"fspf_path: {out}/fspf.pb"
    assert re.fullmatch(r"fspf_key: [0-9a-f]{64}", last[1])
    assert re.fullmatch(r"fspf_tag: [0-9a-f]{32}", last[2])
    tree = fspf.ProtectedTree.open(f"{out}/fspf.pb", last[1].split()[1], last[2].split()[1])
    assert (
        tree.covers("/app/core.py")
        and tree.region_of("/lib/dep/__init__.py").protection == "authenticated"
    )


def test_seal_shows_progress_on_large_trees(tmp_path: Path) -> None:
    src = tmp_path / "many"
    src.mkdir()
    for i in range(250):
        (src / f"m{i}.py").write_text(f"X = {i}\n")
    proc = _run("seal", str(src), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "sealing: 250/250 files" in proc.stderr


def test_seal_refuses_nonempty_out(src_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "x").write_text("x")
    proc = _run("seal", str(src_tree), "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr == f"cloister: error: --out {out} exists and is not an empty directory\n"
