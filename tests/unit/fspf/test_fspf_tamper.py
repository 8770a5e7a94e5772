"""Each way of tampering with a sealed tree is refused, with its own message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fspf_testlib import RUNNER_CODE, run_python, src_tree

from cloister import errors, fspf

__all__ = ["src_tree"]


def _sealed(src: Path, tmp_path: Path) -> tuple[fspf.SealResult, Path]:
    out = tmp_path / "sealed"
    return fspf.seal(str(src), str(out), authenticate=["lib"]), out


def _open(result: fspf.SealResult) -> fspf.ProtectedTree:
    return fspf.ProtectedTree.open(result.fspf_path, result.key_hex, result.tag_hex)


def test_flipped_byte_is_refused_and_nothing_runs(src_tree: Path, tmp_path: Path) -> None:
    result, out = _sealed(src_tree, tmp_path)
    target = out / "main.py"
    data = bytearray(target.read_bytes())
    data[3] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(
        errors.IntegrityError,
        match=r"main\.py failed its integrity check at chunk 0: its content was modified",
    ):
        _open(result).read("/main.py")
    proc = run_python(RUNNER_CODE, result.fspf_path, result.key_hex, result.tag_hex, str(target))
    assert proc.returncode != 0
    assert "main ran" not in proc.stdout
    assert "content was modified" in proc.stderr


def test_flipped_byte_in_authenticated_file(src_tree: Path, tmp_path: Path) -> None:
    result, out = _sealed(src_tree, tmp_path)
    target = out / "lib" / "dep" / "__init__.py"
    target.write_text("VALUE = 43\n")
    with pytest.raises(errors.IntegrityError, match="content was modified"):
        _open(result).read("/lib/dep/__init__.py")


def test_truncated_file_is_refused(src_tree: Path, tmp_path: Path) -> None:
    result, out = _sealed(src_tree, tmp_path)
    target = out / "app" / "core.py"
    size = target.stat().st_size
    target.write_bytes(target.read_bytes()[:-5])
    with pytest.raises(errors.IntegrityError) as info:
        _open(result)
    assert f"core.py has {size - 5} bytes, expected {size} (truncated or replaced)" in "\n".join(
        info.value.details
    )
    tree = fspf.ProtectedTree.open(result.fspf_path, result.key_hex, result.tag_hex, check=False)
    with pytest.raises(errors.IntegrityError, match="truncated, extended or replaced"):
        tree.read("/app/core.py")


def test_swapped_files_are_refused(src_tree: Path, tmp_path: Path) -> None:
    (src_tree / "app" / "a.py").write_text("A = 1  # same size\n")
    (src_tree / "app" / "b.py").write_text("B = 2  # same size\n")
    result, out = _sealed(src_tree, tmp_path)
    a, b = out / "app" / "a.py", out / "app" / "b.py"
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    with pytest.raises(
        errors.IntegrityError,
        match=r"a\.py failed .*holds the content of .*b\.py \(files swapped\)",
    ):
        _open(result).read("/app/a.py")


def test_added_file_is_refused(src_tree: Path, tmp_path: Path) -> None:
    result, out = _sealed(src_tree, tmp_path)
    (out / "app" / "evil.py").write_text("print('pwned')\n")
    with pytest.raises(errors.IntegrityError) as info:
        _open(result)
    assert any("evil.py is not listed in the protection file" in d for d in info.value.details)
    # even without the start-up check, importing it is refused
    tree = fspf.ProtectedTree.open(result.fspf_path, result.key_hex, result.tag_hex, check=False)
    finder = fspf.install_importer(tree)
    try:
        with pytest.raises(errors.IntegrityError, match="refusing to import it"):
            finder.find_spec("app.evil", [str(out / "app")])
    finally:
        fspf.uninstall_importer(finder)


def test_added_file_in_authenticated_region_is_refused(src_tree: Path, tmp_path: Path) -> None:
    result, out = _sealed(src_tree, tmp_path)
    (out / "lib" / "dep" / "extra.py").write_text("X = 1\n")
    with pytest.raises(errors.IntegrityError) as info:
        _open(result)
    assert any("extra.py is not listed" in d for d in info.value.details)


def test_removed_file_is_refused(src_tree: Path, tmp_path: Path) -> None:
    result, out = _sealed(src_tree, tmp_path)
    (out / "app" / "util.py").unlink()
    with pytest.raises(errors.IntegrityError) as info:
        _open(result)
    assert any("util.py is missing (removed after sealing)" in d for d in info.value.details)
    tree = fspf.ProtectedTree.open(result.fspf_path, result.key_hex, result.tag_hex, check=False)
    with pytest.raises(errors.IntegrityError, match=r"util\.py is missing \(listed in"):
        tree.read("/app/util.py")


def test_rollback_to_older_tree_is_refused(src_tree: Path, tmp_path: Path) -> None:
    old, old_out = _sealed(src_tree, tmp_path)
    saved = tmp_path / "old-copy"
    shutil.copytree(old_out, saved)
    (src_tree / "app" / "core.py").write_text("MARK = 'v2'\n")
    shutil.rmtree(old_out)
    new = fspf.seal(str(src_tree), str(old_out), authenticate=["lib"])
    assert new.tag_hex != old.tag_hex
    # the attacker puts the old, validly sealed tree back
    shutil.rmtree(old_out)
    shutil.copytree(saved, old_out)
    with pytest.raises(errors.IntegrityError) as info:
        fspf.ProtectedTree.open(new.fspf_path, new.key_hex, new.tag_hex)
    assert f"has tag {old.tag_hex}, expected {new.tag_hex}" in info.value.message
    assert "rolled back" in info.value.message


def test_wrong_key_is_refused(src_tree: Path, tmp_path: Path) -> None:
    result, _ = _sealed(src_tree, tmp_path)
    wrong = ("0" if result.key_hex[0] != "0" else "1") + result.key_hex[1:]
    with pytest.raises(errors.IntegrityError, match="does not decrypt with the given key") as info:
        fspf.ProtectedTree.open(result.fspf_path, wrong, result.tag_hex)
    assert result.fspf_path in info.value.message
    assert wrong not in str(info.value.lines())  # a key never appears in an error


def test_wrong_tag_is_refused(src_tree: Path, tmp_path: Path) -> None:
    result, _ = _sealed(src_tree, tmp_path)
    wrong = "f" * 32 if result.tag_hex != "f" * 32 else "e" * 32
    with pytest.raises(errors.IntegrityError, match="fspf_tag in the policy is wrong") as info:
        fspf.ProtectedTree.open(result.fspf_path, result.key_hex, wrong)
    assert result.fspf_path in info.value.message
    with pytest.raises(errors.ConfigError, match="fspf_tag must be 32 hex digits"):
        fspf.ProtectedTree.open(result.fspf_path, result.key_hex, "abc")


def test_tampered_manifest_is_refused(src_tree: Path, tmp_path: Path) -> None:
    result, _ = _sealed(src_tree, tmp_path)
    pb = Path(result.fspf_path)
    data = bytearray(pb.read_bytes())
    data[30] ^= 1  # inside the ciphertext, GCM tag untouched
    pb.write_bytes(bytes(data))
    # the state tag commits to the whole file: any change is a different state
    with pytest.raises(errors.IntegrityError, match="is not in the expected state"):
        _open(result)


def test_flipped_byte_in_sealed_code_is_refused(src_tree: Path, tmp_path: Path) -> None:
    result, out = _sealed(src_tree, tmp_path)
    target = out / "main.py.code"
    data = bytearray(target.read_bytes())
    data[10] ^= 0x01
    target.write_bytes(bytes(data))
    proc = run_python(
        RUNNER_CODE, result.fspf_path, result.key_hex, result.tag_hex, str(out / "main.py")
    )
    assert proc.returncode == 4
    assert "main ran" not in proc.stdout
    assert "main.py.code failed its integrity check" in proc.stderr
