"""The compose ``init`` service (deploy/compose/create-sessions.sh) run on this machine
against a real CAS, as the container runs it: it creates the sessions once, and a later
run (every ``docker compose up`` starts it again) leaves unchanged sessions, and so their
certificates, alone. Before issue 18 it updated both sessions on every ``up``, and an
update re-issues every certificate: services started earlier no longer trusted the new
ones (Redis: ``tlsv1 alert unknown ca``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_support import DEPLOY, VENV_BIN

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from cas_harness import CAS
from run_harness import LAS

SCRIPT = Path(os.environ.get("CLOISTER_INIT_SCRIPT", DEPLOY / "compose/create-sessions.sh"))


@pytest.fixture
def cas(tmp_path: Path) -> Iterator[CAS]:
    server = CAS(tmp_path / "cas", tmp_path / "cas.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def las(tmp_path: Path) -> Iterator[LAS]:
    """The node's LAS, which init enrols for its sessions (as compose's las service)."""
    agent = LAS(tmp_path / "las", tmp_path / "las.log")
    agent.start()
    yield agent
    agent.stop()


def write_seal(path: Path, tag: str) -> None:
    path.write_text("sealed 2 files\nfspf_path: /fspf/encrypted-files/fspf.pb\n"
                    f"fspf_key: {'ab' * 32}\nfspf_tag: {tag}\n")


def run_init(cas: CAS, las: LAS, tmp_path: Path) -> str:
    (tmp_path / "public").mkdir(exist_ok=True)
    env = {"PATH": f"{VENV_BIN}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "FLASK_SESSION": "init-flask", "REDIS_SESSION": "init-redis",
           "CAS_STATE": str(cas.state), "CAS_PUBLIC": str(tmp_path / "public"),
           "SEAL_FILE": str(tmp_path / "seal.txt"), "POLICIES": str(DEPLOY / "policies"),
           "CLOISTER_CAS_ADDR": f"localhost:{cas.port}",
           "CLOISTER_HOME": str(tmp_path / "identity"), "CLOISTER_LAS_ADDR": las.addr}
    done = subprocess.run(["sh", str(SCRIPT)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ab" * 32 not in done.stdout + done.stderr, "the fspf key was printed"
    return done.stdout


def public(cas: CAS, session: str, secret: str) -> str:
    reply = cas.curl(f"/v1/values/session={session},secret={secret}")
    assert reply.status == 200, reply.body
    return str(json.loads(reply.body)["value"])


def test_init_creates_once_then_keeps_unchanged_sessions_and_their_certificates(
        cas: CAS, las: LAS, tmp_path: Path) -> None:
    write_seal(tmp_path / "seal.txt", "11" * 16)
    out = run_init(cas, las, tmp_path)
    assert "creating session init-redis" in out and "creating session init-flask" in out
    assert f"{las.platform_id()} enrolled for sessions of identity" in out
    api_ca = public(cas, "init-flask", "api_ca_cert")

    out = run_init(cas, las, tmp_path)  # the next `docker compose up`
    assert public(cas, "init-flask", "api_ca_cert") == api_ca, "the API's CA was re-issued"
    assert "session init-redis unchanged" in out and "session init-flask unchanged" in out, out

    # a rebuilt API image (new fspf tag) changes the Flask policy: that one is updated
    write_seal(tmp_path / "seal.txt", "22" * 16)
    out = run_init(cas, las, tmp_path)
    assert "session init-redis unchanged" in out, out
    assert "updating session init-flask" in out, out
