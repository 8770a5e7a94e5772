"""pyconcrete and sourcedefender, in a throwaway venv of their own, when they install here.

The venv lives in the user's cache (``$XDG_CACHE_HOME/cloister-bench/peers``)
so the bench's own environment never gets their dependencies.  Whether each
tool installed is remembered in ``status.json`` there, with the reason when it
did not; delete the directory to try again.

pyconcrete bakes its passphrase into its compiled extension at build time
(that is its design); the bench uses a random one and keeps no copy, and
pip's wheel cache is bypassed so no wheel with that passphrase stays behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("pyconcrete", "sourcedefender")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cloister-bench" / "peers"


@dataclass(frozen=True)
class Peers:
    python: Path | None
    site: list[str]
    status: dict[str, str]  # tool -> "ok" or the reason it is unavailable

    def ok(self, tool: str) -> bool:
        return self.status.get(tool) == "ok"

    def bin(self, name: str) -> str:
        assert self.python is not None
        return str(self.python.parent / name)


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    interesting = [ln for ln in lines if "error" in ln.lower() and "warning" not in ln.lower()]
    pick = (interesting or lines or ["no output"])[-1]
    return pick[:200]


def ensure(say: object = print, timeout: float = 300) -> Peers:
    """The peers venv, created and filled on first use (each tool tried once)."""
    root = cache_dir()
    status_file = root / "status.json"
    python = root / "venv" / "bin" / "python"
    status: dict[str, str] = {}
    if status_file.exists():
        status = json.loads(status_file.read_text())
    if not python.exists():
        root.mkdir(parents=True, exist_ok=True)
        made = subprocess.run([sys.executable, "-m", "venv", str(root / "venv")],
                              check=False, capture_output=True, text=True, timeout=timeout)
        if made.returncode != 0:
            reason = f"cannot create a venv: {_last_error(made.stderr + made.stdout)}"
            return Peers(None, [], dict.fromkeys(TOOLS, reason))
        status = {}
    for tool in TOOLS:
        if tool in status:
            continue
        if callable(say):
            say(f"installing {tool} into {root / 'venv'} (once)")
        argv = [str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", tool]
        if tool == "pyconcrete":
            argv += ["--config-settings", f"setup-args=-Dpassphrase={secrets.token_hex(16)}",
                     "--config-settings", "setup-args=-Dmode=lib"]  # the import hook, not the exe
        try:
            done = subprocess.run(argv, check=False, capture_output=True, text=True,
                                  timeout=timeout)
            status[tool] = "ok" if done.returncode == 0 else (
                f"did not install: {_last_error(done.stderr + done.stdout)}")
        except subprocess.TimeoutExpired:
            status[tool] = f"did not install: pip install {tool} took over {timeout:.0f}s"
        status_file.write_text(json.dumps(status, indent=1))
    site = subprocess.run(
        [str(python), "-c", "import site, json; print(json.dumps(site.getsitepackages()))"],
        capture_output=True, text=True, check=True).stdout
    return Peers(python, list(json.loads(site)), status)


def protect_pyconcrete(peers: Peers, src: Path, dest: Path, timeout: float = 300) -> None:
    """``dest``: a copy of ``src`` whose .py files are replaced by pyconcrete's .pye."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([peers.bin("pyecli"), "compile", "--source", str(dest), "--pye",
                    "--remove-py"], check=True, capture_output=True, timeout=timeout)


def protect_sourcedefender(peers: Peers, src: Path, dest: Path, timeout: float = 300) -> None:
    """``dest``: a copy of ``src`` whose .py files are replaced by sourcedefender's .pye."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([peers.bin("sourcedefender"), "encrypt", "--remove", str(dest)],
                   check=True, capture_output=True, timeout=timeout)
