"""``cloister cas serve --processes 2``: two CAS processes on one port, one store, one audit log.

Shown on real processes: new connections are answered by both (their process ids differ
in ``/metrics``); what one writes, the other serves; exactly one of concurrent updates with
one predecessor wins across them; every decision of both is in the one audit log; a
``kill -9`` of the first process takes the second down with it (nothing keeps serving a
port its operator believes stopped); a shamir CAS refuses ``--processes 2`` with the reason.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path

from cas_harness import CA_SESSION, CAS, CLOISTER, Identity, init_state, make_identity

from cloister.policy import load_session


def _pid_answering(cas: CAS) -> int:
    text = cas.curl("/metrics").body.decode()
    found = re.search(r"^cloister_cas_process_id (\d+)", text, flags=re.M)
    assert found, "no process id in /metrics"
    return int(found.group(1))


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _update(name: str, predecessor: str, n: int) -> bytes:
    return (CA_SESSION.format(name=name) + f"predecessor: {predecessor}\n"
            + f"# update {n}\n").encode()


def test_two_processes_serve_one_port_and_one_store(tmp_path: Path) -> None:
    ident: Identity = make_identity(tmp_path / "ids", "owner")
    cas = CAS(tmp_path / "state", tmp_path / "cas.log", ("--processes", "2"))
    cas.start()
    try:
        assert cas.proc is not None
        deadline = time.monotonic() + 30
        seen: set[int] = set()
        while len(seen) < 2 and time.monotonic() < deadline:
            seen.add(_pid_answering(cas))  # curl: a new connection each time
        assert len(seen) == 2, f"only process {seen} answered in 30 s"
        assert cas.proc.pid in seen

        # written through whichever process took the connection, read through both
        for i in range(6):
            assert cas.curl("/v1/sessions", identity=ident,
                            data=CA_SESSION.format(name=f"p-{i}").encode()).status == 201
        for _ in range(12):
            for i in range(6):
                assert cas.curl(f"/v1/sessions/p-{i}", identity=ident).status == 200

        # exactly one of 8 concurrent updates of one predecessor wins, across the processes
        current = cas.curl("/v1/sessions/p-0", identity=ident).json()["hash"]
        statuses: list[int] = []
        threads = [threading.Thread(target=lambda n=n: statuses.append(cas.curl(
            "/v1/sessions", identity=ident, data=_update("p-0", current, n)).status))
            for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200] + [409] * 7, statuses
        final = cas.curl("/v1/sessions/p-0", identity=ident).json()
        assert load_session(final["session"]).predecessor == current

        # one audit log, every decision of both processes in it, each line whole
        entries = [json.loads(line) for line in
                   (cas.state / "audit.log").read_text().splitlines()]
        creates = [e for e in entries if e["action"] == "create" and e["decision"] == "allow"]
        updates = [e for e in entries if e["action"] == "update"]
        assert sorted(e["session"] for e in creates) == [f"p-{i}" for i in range(6)]
        assert sorted(e["decision"] for e in updates) == ["allow"] + ["deny"] * 7

        # kill -9 of the first process: the second one stops too
        second = [p for p in _children(cas.proc.pid) if p in seen]
        assert second, "the second process is not a child of the first"
        cas.kill9()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and Path(f"/proc/{second[0]}").exists() \
                and "zombie" not in _state(second[0]):
            time.sleep(0.1)
        assert not Path(f"/proc/{second[0]}").exists() or "zombie" in _state(second[0]), \
            "the second CAS process kept running after the first was killed"
    finally:
        cas.stop()


def _state(pid: int) -> str:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "gone"
    return status.split("State:", 1)[1].split("\n", 1)[0]


def test_a_shamir_cas_refuses_more_than_one_process(tmp_path: Path) -> None:
    state = tmp_path / "state"
    init_state(state, "--seal", "shamir", "--key-shares", "3", "--key-threshold", "2")
    done = subprocess.run(
        [CLOISTER, "cas", "serve", "--state", str(state), "--listen", "127.0.0.1:0",
         "--processes", "2"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "--processes 2 needs the file seal; this CAS has the shamir seal" in done.stderr
    assert "Traceback" not in done.stderr
