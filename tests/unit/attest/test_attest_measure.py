"""Measurement: deterministic, follows the documented encoding, changes with any measured byte."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cloister import errors
from cloister.attest import _measure, is_python_interpreter, measure

RUNTIME = Path(_measure.__file__).resolve().parent.parent


def _item(name: str, content: bytes) -> bytes:
    encoded = name.encode()
    return len(encoded).to_bytes(8, "big") + encoded + len(content).to_bytes(8, "big") + content


def _runtime_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "site" / "cloister"
    shutil.copytree(RUNTIME, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _native(tmp_path: Path, content: bytes = b"\x7fELF fake program") -> Path:
    program = tmp_path / "bin" / "prog"
    program.parent.mkdir(exist_ok=True)
    program.write_bytes(content)
    program.chmod(0o755)
    return program


def test_measure_is_deterministic_and_64_hex() -> None:
    first = measure()
    assert first == measure() == measure(sys.executable)
    assert len(first) == 64 and int(first, 16) >= 0 and first == first.lower()


def test_native_measurement_follows_documented_encoding(tmp_path: Path) -> None:
    content = b"\x7fELF fake program"
    program = _native(tmp_path, content)
    expected = hashlib.sha256(
        b"cloister-measurement-v1\0" + b"native\0" + _item("executable", content)
    ).hexdigest()
    assert measure(str(program)) == expected


def test_python_measurement_follows_documented_encoding(tmp_path: Path) -> None:
    runtime = tmp_path / "cloister"
    (runtime / "sub" / "__pycache__").mkdir(parents=True)
    (runtime / "b.py").write_bytes(b"B")
    (runtime / "sub" / "a.py").write_bytes(b"A")
    (runtime / "sub" / "__pycache__" / "a.cpython-311.py").write_bytes(b"ignored")
    (runtime / "data.txt").write_bytes(b"not python: ignored")
    interpreter = Path(sys.executable).resolve()
    expected = hashlib.sha256(
        b"cloister-measurement-v1\0" + b"python\0"
        + _item("interpreter", interpreter.read_bytes())
        + b"".join(_item("libpython", lib.read_bytes())
                   for _, lib in _measure.shared_libpython(interpreter))
        + _item("cloister/b.py", b"B") + _item("cloister/sub/a.py", b"A")
    ).hexdigest()
    assert measure(sys.executable, runtime=runtime) == expected


def test_shared_libpython_is_measured_when_the_interpreter_links_one() -> None:
    libs = _measure.shared_libpython(Path(sys.executable).resolve())
    # what the dynamic loader links, not Py_ENABLE_SHARED: Debian's python3 says 1 and is
    # linked statically (its libpython3.11.so is for embedders)
    ldd = subprocess.run(["ldd", sys.executable], capture_output=True, text=True, timeout=30)
    if "libpython" not in ldd.stdout:
        assert libs == []
        return
    ((name, lib),) = libs
    assert name == "libpython"
    assert lib.name.startswith("libpython") and lib.is_file()


def test_copy_of_runtime_measures_alike_and_any_change_shows(tmp_path: Path) -> None:
    copy = _runtime_copy(tmp_path)
    original = measure(sys.executable, runtime=copy)
    # location-independent: only names and bytes count
    other = tmp_path / "elsewhere" / "cloister"
    shutil.copytree(copy, other)
    assert measure(sys.executable, runtime=other) == original

    target = copy / "attest" / "_plugin.py"
    target.write_bytes(target.read_bytes() + b"\n# one more line\n")
    changed = measure(sys.executable, runtime=copy)
    assert changed != original

    target.write_bytes(target.read_bytes()[: -len(b"\n# one more line\n")])
    assert measure(sys.executable, runtime=copy) == original

    (copy / "attest" / "_extra.py").write_text("")
    assert measure(sys.executable, runtime=copy) != original


def test_pycache_does_not_change_measurement(tmp_path: Path) -> None:
    copy = _runtime_copy(tmp_path)
    before = measure(sys.executable, runtime=copy)
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "x.py").write_text("x = 1")
    assert measure(sys.executable, runtime=copy) == before


def test_native_change_symlink_and_path_lookup(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    program = _native(tmp_path)
    value = measure(str(program))
    link = tmp_path / "link-to-prog"
    link.symlink_to(program)
    assert measure(str(link)) == value
    monkeypatch.setenv("PATH", str(program.parent))
    assert measure("prog") == value
    program.write_bytes(program.read_bytes()[:-1] + b"X")
    assert measure(str(program)) != value


def test_python_detection(tmp_path: Path) -> None:
    assert is_python_interpreter(Path(sys.executable).resolve())
    for name in ("python", "python3", "python3.11", "python3.13t"):
        assert is_python_interpreter(tmp_path / name)
    for name in ("python3-config", "redis-server", "ipython"):
        assert not is_python_interpreter(tmp_path / name)
    alias = tmp_path / "my-interpreter"
    alias.symlink_to(Path(sys.executable).resolve())
    assert measure(str(alias)) == measure()


def test_native_program_named_python_is_measured_as_python(tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.write_bytes(b"not really python")
    assert measure(str(fake)) != measure(str(_native(tmp_path, b"not really python")))


def test_missing_program_is_a_readable_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="not found on PATH"):
        measure("no-such-program-xyz")
    with pytest.raises(errors.ConfigError, match="not a regular file"):
        measure(str(tmp_path))


def test_cli_prints_only_the_measurement(tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "cloister"
    result = subprocess.run([str(cli), "measure"], capture_output=True, text=True, check=True)
    assert result.stdout == measure() + "\n"
    program = _native(tmp_path)
    result = subprocess.run([str(cli), "measure", str(program)], capture_output=True, text=True,
                            check=True)
    assert result.stdout == measure(str(program)) + "\n"
    result = subprocess.run([str(cli), "measure", "no-such-program-xyz"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert "not found on PATH" in result.stderr and "Traceback" not in result.stderr
