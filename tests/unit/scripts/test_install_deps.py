"""``scripts/install-deps`` on a machine without the tools (a PATH that has none of them)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[3] / "scripts" / "install-deps"
#: what the script itself uses; nothing it checks for
CORE = ("bash", "sort", "printf", "cat")


def fake_machine(tmp_path: Path, uid: int) -> tuple[dict[str, str], Path]:
    """A PATH with only the core tools, an ``id`` answering ``uid``, an apt-get that logs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in CORE:
        real = shutil.which(tool)
        assert real is not None, f"{tool} is needed to run the script"
        (bin_dir / tool).symlink_to(real)
    log = tmp_path / "apt.log"
    (bin_dir / "id").write_text(f"#!{shutil.which('bash')}\necho {uid}\n")
    (bin_dir / "apt-get").write_text(f'#!{shutil.which("bash")}\necho "$*" >> {log}\n')
    for script in ("id", "apt-get"):
        (bin_dir / script).chmod(0o755)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}, log


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=30)


def test_as_root_it_installs_every_missing_tool_with_apt_get(tmp_path: Path) -> None:
    env, log = fake_machine(tmp_path, uid=0)
    done = run(env, "test")
    assert done.returncode == 0, done.stderr
    installed = log.read_text().split()
    # gcc and python3-dev: tpm2-pytss has no wheel, pip compiles it (a fresh Debian has
    # neither); python3-venv: Debian's python3 cannot make .venv without it
    for package in ("redis-server", "redis-tools", "gocryptfs", "fuse3", "swtpm", "jq",
                    "curl", "podman", "runc", "mmdebstrap", "gcc", "python3-dev",
                    "python3-venv", "zsh", "fish", "iproute2"):
        assert package in installed, f"{package} not installed: {installed}"
    assert log.read_text().startswith("install -y"), "no apt-get update when install works"


def test_run_profile_installs_only_what_the_demo_needs(tmp_path: Path) -> None:
    env, log = fake_machine(tmp_path, uid=0)
    assert run(env, "run").returncode == 0
    # no python3 on this PATH at all, so python3-venv too (`make run` creates .venv)
    assert sorted(log.read_text().split()[4:]) == [
        "fuse3", "gocryptfs", "python3-venv", "redis-server"]


def test_not_root_prints_the_command_and_tests_go_on(tmp_path: Path) -> None:
    env, log = fake_machine(tmp_path, uid=1000)
    done = run(env, "test")
    assert done.returncode == 0
    assert "sudo apt-get install -y --no-install-recommends" in done.stderr
    assert "redis-server" in done.stderr and "skipped" in done.stderr
    assert not log.exists(), "apt-get must not run without root"


def test_not_root_run_profile_stops(tmp_path: Path) -> None:
    env, _ = fake_machine(tmp_path, uid=1000)
    done = run(env, "run")
    assert done.returncode == 1
    assert "install with: sudo apt-get install" in done.stderr


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="this machine lacks the tools")
def test_nothing_is_asked_of_apt_when_everything_is_present(tmp_path: Path) -> None:
    log = tmp_path / "apt.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(f'#!{shutil.which("bash")}\necho "$*" >> {log}\n')
    (bin_dir / "apt-get").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = run(env, "run")
    assert done.returncode == 0, done.stderr
    assert not log.exists(), "apt-get called although every tool is present"
