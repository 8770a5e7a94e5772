"""``cloister demo up`` started as root: Redis and the API each under a uid of its own, pinned.

The demo runs from a Python every uid can reach (the distribution's, in a venv
of this test) in a directory others can enter; the seed walkthrough still
works, each service's processes run as its uid, the CAS audited those uids,
and Redis's uid running the genuine runtime for the API's service gets
nothing: the session pins the API's uid.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_harness import Demo, seed_walkthrough

from cloister.demo._users import API_ID, REDIS_ACCOUNT
from support import every_uid_python


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("the demo runs each service under its own uid only when started as root "
                    "(and this test needs setpriv)")
    try:
        pwd.getpwnam(REDIS_ACCOUNT)
    except KeyError:
        pytest.skip(f"no {REDIS_ACCOUNT!r} account (apt-get install redis-server creates it)")
    public = Path(tempfile.mkdtemp(prefix="cloister-demo-uids-"))
    public.chmod(0o755)  # others may enter: the services' uids reach their files below it
    try:
        python = every_uid_python(public / "venv")
        d = Demo.fresh(public / "demo")
        d.launcher = (python, "-m", "cloister.cli")
        up = d.up()
        assert f"Redis runs as uid {_redis()[0]}, the API as uid {API_ID[0]}" in up.stdout
        try:
            yield d
        finally:
            d.cli("demo", "down", "--dir", str(d.dir))
        # down unmounts Redis's volume although root may not even stat another user's FUSE
        # mount: nothing is left mounted (nor a gocryptfs process) below the demo
        mounted = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                   if str(public) in line]
        assert not mounted, mounted
    finally:
        shutil.rmtree(public, ignore_errors=True)


def _redis() -> tuple[int, int]:
    account = pwd.getpwnam(REDIS_ACCOUNT)
    return account.pw_uid, account.pw_gid


def _ids(pid: int) -> tuple[int, int]:
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["Uid"].split()[0]), int(status["Gid"].split()[0])


def _tree(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(p for child in children for p in _tree(int(child)))]


def test_each_service_runs_under_its_own_uid_and_the_walkthrough_works(
        demo: Demo, tmp_path: Path) -> None:
    seed_walkthrough(demo, tmp_path)
    for name, ids in (("redis", _redis()), ("api", API_ID)):
        found = {pid: _ids(pid) for pid in _tree(demo.pid(name))}
        assert set(found.values()) == {ids}, f"{name} processes run as {found}"
    # the CAS released each configuration to the uid the LAS saw, and audited it
    audit = [json.loads(line) for line in
             (demo.dir / "cas" / "audit.log").read_text().splitlines()]
    allowed = {(e.get("service"), e.get("uid")) for e in audit
               if e.get("action") == "attest" and e.get("decision") == "allow"}
    assert {("redis", _redis()[0]), ("flask_restapi", API_ID[0])} <= allowed, allowed


def test_redis_uid_running_the_genuine_runtime_for_the_api_gets_nothing(demo: Demo) -> None:
    names = json.loads((demo.dir / "sessions.json").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOISTER_", "SCONE_"))}
    env.update(CLOISTER_CAS_ADDR=f"127.0.0.1:{demo.cas_port}",
               CLOISTER_LAS_ADDR=str(demo.dir / "las.sock"),
               CLOISTER_CAS_CERT=str(demo.dir / "public" / "cas-ca.pem"),
               CLOISTER_CONFIG_ID=f"{names['flask']}/flask_restapi", CLOISTER_RETRY_SECONDS="2")
    done = subprocess.run(
        ["setpriv", f"--reuid={_redis()[0]}", f"--regid={_redis()[1]}", "--clear-groups",
         *demo.launcher, "run"], env=env, capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "attestation refused" in done.stderr
    audit = (demo.dir / "cas" / "audit.log").read_text().splitlines()
    last = json.loads(next(line for line in reversed(audit) if '"deny"' in line))
    assert (f"the caller runs as uid {_redis()[0]}, service flask_restapi requires uid "
            f"{API_ID[0]}") in last["reason"], last
