"""Sealed Python code under ``cloister run``: key and tag come only from the CAS policy.

Each tampering of the sealed tree is refused with its own message before any
of the program runs; the plaintext never reaches the disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cas_harness import CLOISTER
from run_harness import Platform, platform, python_measurement

MARKER = "CLOISTER_SEALED_MARKER_51c9"
SOURCES = {
    "main.py": "import sys\nimport pkg.core\nprint('main ran', pkg.core.MARK)\n"
               "open(sys.argv[1], 'w').write('ran')\n",
    "pkg/__init__.py": "",
    "pkg/core.py": f"MARK = {MARKER!r}\n",
    "pkg/data.txt": f"data {MARKER}\n",
}

SESSION = """\
name: {name}
version: "0.3"
services:
  - name: app
    mrenclaves: [{measurement}]
    command: python3 {sealed}/main.py {ran}
    fspf_path: {sealed}/fspf.pb
    fspf_key: {key}
    fspf_tag: {tag}
security:
  attestation:
    tolerate: [debug-mode]
"""


def seal(src: Path, out: Path) -> dict[str, str]:
    done = subprocess.run([CLOISTER, "seal", str(src), "--out", str(out)],
                          capture_output=True, text=True, check=True)
    lines = done.stdout.strip().splitlines()[-3:]
    return dict(line.split(": ", 1) for line in lines)


def write_sources(src: Path, sources: dict[str, str]) -> None:
    for rel, text in sources.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with platform(tmp_path_factory.mktemp("sealed")) as p:
        yield p


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("tree")
    write_sources(root / "src", SOURCES)
    v1 = seal(root / "src", root / "sealed-v1")
    write_sources(root / "src", {"pkg/core.py": f"MARK = {MARKER!r} + ' v2'\n"})
    v2 = seal(root / "src", root / "sealed-v2")
    shutil.rmtree(root / "src")  # only ciphertext remains on disk
    return {"root": root, "v1": v1, "v2": v2}


def deploy(plat: Platform, sealed: dict[str, object], tmp_path: Path, name: str, *,
           version: str = "v2", key: str | None = None, tag: str | None = None,
           tamper: Callable[[Path], None] | None = None) -> subprocess.CompletedProcess[str]:
    root = Path(str(sealed["root"]))
    tree = tmp_path / "sealed"
    shutil.copytree(root / f"sealed-{version}", tree)
    if tamper is not None:
        tamper(tree)
    info: dict[str, str] = sealed["v2"]  # type: ignore[assignment]
    plat.create(SESSION.format(name=name, measurement=python_measurement(), sealed=tree,
                               ran=tmp_path / "ran", key=key or info["fspf_key"],
                               tag=tag or info["fspf_tag"]))
    return plat.run(f"{name}/app")


def assert_refused(done: subprocess.CompletedProcess[str], tmp_path: Path, *needles: str) -> None:
    assert done.returncode == 4, (done.stdout, done.stderr)
    assert "main ran" not in done.stdout
    assert not (tmp_path / "ran").exists(), "sealed code ran despite the refusal"
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def test_sealed_program_runs_and_leaves_no_plaintext(plat: Platform, sealed: dict[str, object],
                                                     tmp_path: Path) -> None:
    done = deploy(plat, sealed, tmp_path, "sealed-ok")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"main ran {MARKER} v2"
    assert (tmp_path / "ran").read_text() == "ran"
    hits = []
    for top in (tmp_path, Path(str(sealed["root"])), plat.root):
        for dirpath, dirnames, filenames in os.walk(top):
            hits += [os.path.join(dirpath, d) for d in dirnames if d == "__pycache__"]
            for name in filenames:
                path = os.path.join(dirpath, name)
                if not os.path.isfile(path):  # the LAS's socket
                    continue
                with open(path, "rb") as f:
                    if MARKER.encode() in f.read():
                        hits.append(path)
    assert hits == [], f"plaintext or bytecode of sealed code on disk: {hits}"


def flip_byte(rel: str) -> Callable[[Path], None]:
    def tamper(tree: Path) -> None:
        data = bytearray((tree / rel).read_bytes())
        data[len(data) // 2] ^= 0x01
        (tree / rel).write_bytes(bytes(data))
    return tamper


def truncate(rel: str) -> Callable[[Path], None]:
    def tamper(tree: Path) -> None:
        data = (tree / rel).read_bytes()
        (tree / rel).write_bytes(data[: len(data) // 2])
    return tamper


def swap(a: str, b: str) -> Callable[[Path], None]:
    def tamper(tree: Path) -> None:
        da, db = (tree / a).read_bytes(), (tree / b).read_bytes()
        (tree / a).write_bytes(db)
        (tree / b).write_bytes(da)
    return tamper


def add(rel: str) -> Callable[[Path], None]:
    return lambda tree: (tree / rel).write_text("print('planted')\n")


def remove(rel: str) -> Callable[[Path], None]:
    return lambda tree: (tree / rel).unlink()


@pytest.mark.parametrize(("case", "tamper", "needle"), [
    ("flipped", flip_byte("pkg/core.py"), "pkg/core.py"),
    ("truncated", truncate("main.py"), "main.py"),
    ("swapped", swap("pkg/core.py", "pkg/data.txt"), "pkg/"),
    ("added", add("pkg/evil.py"), "pkg/evil.py"),
    ("removed", remove("pkg/data.txt"), "pkg/data.txt"),
])
def test_tampered_tree_is_refused(plat: Platform, sealed: dict[str, object], tmp_path: Path,
                                  case: str, tamper: Callable[[Path], None],
                                  needle: str) -> None:
    done = deploy(plat, sealed, tmp_path, f"tamper-{case}", tamper=tamper)
    assert_refused(done, tmp_path, needle)


def test_rollback_to_the_previous_tree_is_refused(plat: Platform, sealed: dict[str, object],
                                                  tmp_path: Path) -> None:
    done = deploy(plat, sealed, tmp_path, "rollback", version="v1")
    assert_refused(done, tmp_path, "tag")


def test_wrong_key_in_policy_is_refused(plat: Platform, sealed: dict[str, object],
                                        tmp_path: Path) -> None:
    done = deploy(plat, sealed, tmp_path, "wrong-key", key="5" * 64)
    assert_refused(done, tmp_path)
    assert "5" * 64 not in done.stderr


def test_wrong_tag_in_policy_is_refused(plat: Platform, sealed: dict[str, object],
                                        tmp_path: Path) -> None:
    done = deploy(plat, sealed, tmp_path, "wrong-tag", tag="6" * 32)
    assert_refused(done, tmp_path, "tag")


def test_f_a_sealed_program_that_raises_shows_file_and_line_not_source(
        plat: Platform, tmp_path: Path) -> None:
    """(f) an uncaught exception in sealed code: stderr (often a log file) names the file
    and line, never a decrypted source line; the policy's debug switch shows them."""
    src, secret_line = tmp_path / "src", f"raise RuntimeError('boom')  # {MARKER} secret"
    write_sources(src, {"main.py": "import pkg.core\npkg.core.explode()\n",
                        "pkg/__init__.py": "",
                        "pkg/core.py": f"def explode():\n    {secret_line}\n"})
    info = seal(src, tmp_path / "sealed")
    shutil.rmtree(src)
    for name, debug in (("raises", ""), ("raises-debug", "    debug_tracebacks: true\n")):
        text = SESSION.format(name=name, measurement=python_measurement(),
                              sealed=tmp_path / "sealed", ran=tmp_path / "ran",
                              key=info["fspf_key"], tag=info["fspf_tag"])
        plat.create(text.replace("    fspf_path:", debug + "    fspf_path:", 1))
        done = plat.run(f"{name}/app")
        assert done.returncode == 1, done.stderr
        assert f'File "{tmp_path}/sealed/pkg/core.py", line 2, in explode' in done.stderr
        assert "RuntimeError: boom" in done.stderr
        if debug:
            assert secret_line in done.stderr
        else:
            assert MARKER not in done.stderr and "raise RuntimeError" not in done.stderr
