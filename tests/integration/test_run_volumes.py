"""Encrypted volumes: a native program's data directory reaches the disk only encrypted,
survives restarts under the CAS-held key, and opens for no other key."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cas_harness import CLOISTER
from run_harness import Platform, platform

from cloister.runtime._volumes import CIPHER_SUFFIX, unmount

MARKER = "VOLUME_PLAINTEXT_MARKER_93d1"

SESSION = """\
name: {name}
version: "0.3"
services:
  - name: app
    image_name: img
    mrenclaves: [{measurement}]
    command: ["sh", "-c", {script!r}]
images:
  - name: img
    volumes:
      - name: data
        path: {path}
volumes:
  - name: data
security:
  attestation:
    tolerate: [debug-mode]
"""


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    if shutil.which("gocryptfs") is None or not Path("/dev/fuse").exists():
        pytest.skip("encrypted volumes need gocryptfs and /dev/fuse: apt-get install "
                    "gocryptfs fuse3")
    with platform(tmp_path_factory.mktemp("volumes")) as p:
        yield p


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    unmount(str(path))


def sh_measurement() -> str:
    return subprocess.run([CLOISTER, "measure", "sh"], capture_output=True, text=True,
                          check=True).stdout.strip()


def run(plat: Platform, name: str, path: Path, script: str) -> subprocess.CompletedProcess[str]:
    plat.create(SESSION.format(name=name, measurement=sh_measurement(), path=path,
                               script=script))
    return plat.run(f"{name}/app", "--", "sh")


def test_volume_data_is_encrypted_on_disk_and_survives_a_restart(
    plat: Platform, volume: Path, tmp_path: Path
) -> None:
    done = run(plat, "vol-write", volume, f"echo {MARKER} > {volume}/records.txt")
    assert done.returncode == 0, done.stderr
    unmount(str(volume))
    assert not any(volume.iterdir()), "plaintext left in the mount point"
    cipher = Path(str(volume) + CIPHER_SUFFIX)
    stored = [p for p in cipher.rglob("*") if p.is_file()]
    assert stored, "nothing was stored"
    for path in stored:
        assert MARKER.encode() not in path.read_bytes(), f"plaintext in {path}"
        assert "records" not in path.name  # file names are encrypted too
    # a later version of the session keeps the volume key: the data reads back
    text = (plat.cas.curl("/v1/sessions/vol-write", identity=plat.owner).json()["session"])
    current = plat.cas.curl("/v1/sessions/vol-write", identity=plat.owner).json()["hash"]
    out = tmp_path / "out.txt"
    updated = text.replace(f"echo {MARKER} > {volume}/records.txt",
                           f"cat {volume}/records.txt > {out}")
    reply = plat.cas.curl("/session", identity=plat.owner,
                          data=f"predecessor: {current}\n{updated}".encode())
    assert reply.status in (200, 201), reply.body
    done = plat.run("vol-write/app", "--", "sh")
    assert done.returncode == 0, done.stderr
    assert out.read_text().strip() == MARKER


def test_another_sessions_key_does_not_open_the_volume(
    plat: Platform, volume: Path, tmp_path: Path
) -> None:
    assert run(plat, "vol-owner", volume, f"echo {MARKER} > {volume}/x").returncode == 0
    unmount(str(volume))
    out = tmp_path / "stolen.txt"
    done = run(plat, "vol-thief", volume, f"cat {volume}/x > {out}")
    assert done.returncode == 6, (done.stdout, done.stderr)
    assert "wrong key" in done.stderr
    assert not out.exists()
