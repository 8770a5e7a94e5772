"""``cloister demo up --detach`` in a temporary directory on free ports, and shell helpers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

CLOISTER = str(Path(sys.executable).parent / "cloister")

#: the seed's POST body, byte for byte ("Testing the service")
SEED_FORM = (
    "fname=Jane&lname=Doe&address='123 Main Street'&city=Richmond&state=Washington"
    "&ssn=123-223-2345&email=nr@aaa.com&dob=01/01/2010&contactphone=123-234-3456"
    "&drugallergies='Sulpha, Penicillin, Tree Nut'"
    "&preexistingconditions='diabetes, hypertension, asthma'&dateadmitted=01/05/2010"
    "&insurancedetails='Primera Blue Cross'"
)
FIELDS = (
    "fname", "lname", "address", "city", "state", "ssn", "email", "dob", "contactphone",
    "drugallergies", "preexistingconditions", "dateadmitted", "insurancedetails",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Demo:
    dir: Path
    cas_port: int
    redis_port: int
    api_port: int
    #: ``support.disk_state("/tls")`` before the demo started
    tls_before: frozenset[tuple[str, int, int]] | None = None
    #: extra ``demo up`` arguments (``--store postgresql://…``)
    up_args: tuple[str, ...] = ()
    #: how ``cloister`` is started (another interpreter: ``(python, "-m", "cloister.cli")``)
    launcher: tuple[str, ...] = (CLOISTER,)

    @classmethod
    def fresh(cls, directory: Path) -> Demo:
        missing = [tool for tool in ("redis-server", "gocryptfs", "fusermount3")
                   if shutil.which(tool) is None]
        if missing:
            pytest.skip(f"{', '.join(missing)} not installed: run scripts/install-deps "
                        "(or apt-get install redis-server gocryptfs fuse3)")
        return cls(directory, free_port(), free_port(), free_port())

    def cli(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOISTER_", "SCONE_"))}
        return subprocess.run([*self.launcher, *args], capture_output=True, text=True,
                              timeout=timeout, env=env)

    def up(self) -> subprocess.CompletedProcess[str]:
        done = self._up()
        if done.returncode != 0 and "port in use" in done.stderr and not self.dir.exists():
            # another test on this machine took a port between free_port() and the bind
            print(f"retrying demo up on other ports: {done.stderr.strip()}")
            self.cas_port = free_port()
            self.redis_port, self.api_port = free_port(), free_port()
            done = self._up()
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def _up(self) -> subprocess.CompletedProcess[str]:
        return self.cli("demo", "up", "--detach", "--dir", str(self.dir),
                        "--cas-port", str(self.cas_port),
                        "--redis-port", str(self.redis_port), "--api-port", str(self.api_port),
                        *self.up_args)

    def down(self) -> subprocess.CompletedProcess[str]:
        done = self.cli("demo", "down", "--dir", str(self.dir))
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def pid(self, name: str) -> int:
        return int(json.loads((self.dir / "pids" / f"{name}.json").read_text())["pid"])

    def bash(self, script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """``script`` in bash after ``source myenv``, with ``URL`` and ``RESOLVE`` set."""
        prologue = (f"set -o pipefail\nsource {self.dir}/myenv\n"
                    f"export URL=https://api:{self.api_port}\n"
                    f"RESOLVE=api:{self.api_port}:127.0.0.1\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOISTER_", "SCONE_"))}
        return subprocess.run(["bash", "-c", prologue + script], cwd=cwd, capture_output=True,
                              text=True, timeout=60, env=env)

    def api(self, cwd: Path, *curl_args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
        """One curl to the API verified with ``cwd/cacert.pem``: (status, JSON body)."""
        done = subprocess.run(
            ["curl", "-sS", "--cacert", str(self.dir / "cacert.pem"), "-w", "\n%{http_code}",
             "--resolve", f"api:{self.api_port}:127.0.0.1", *curl_args],
            cwd=cwd, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        body, _, status = done.stdout.rpartition("\n")
        return int(status), json.loads(body)


def seed_walkthrough(demo: Demo, tmp_path: Path) -> None:
    """The seed's "Testing the service" in bash, with this demo's ports; asserts every answer."""
    script = f"""
curl -k -X GET "https://${{SCONE_CAS_ADDR-cas}}:{demo.cas_port}/v1/values/session=$FLASK_SESSION" | jq -r .values.api_ca_cert.value > cacert.pem
curl --cacert cacert.pem -X POST ${{URL}}/patient/patient_3 -d "{SEED_FORM}" --resolve $RESOLVE
echo
curl --cacert cacert.pem -X GET ${{URL}}/patient/patient_3 --resolve $RESOLVE
echo
curl --cacert cacert.pem -X GET ${{URL}}/score/patient_3 --resolve $RESOLVE
"""  # noqa: E501
    done = demo.bash(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cacert.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    fetched = (tmp_path / "cacert.pem").read_text().strip()
    assert fetched == (demo.dir / "cacert.pem").read_text().strip()
    posted, got, score = (json.loads(line) for line in done.stdout.splitlines() if line)
    expected = {
        "fname": "Jane", "lname": "Doe", "address": "'123 Main Street'", "city": "Richmond",
        "state": "Washington", "ssn": "123-223-2345", "email": "nr@aaa.com",
        "dob": "01/01/2010", "contactphone": "123-234-3456",
        "drugallergies": "'Sulpha, Penicillin, Tree Nut'",
        "preexistingconditions": "'diabetes, hypertension, asthma'",
        "dateadmitted": "01/05/2010", "insurancedetails": "'Primera Blue Cross'",
        "id": "patient_3",
    }
    for record in (posted, got):
        assert {k: v for k, v in record.items() if k != "score"} == expected
        assert isinstance(record["score"], float)
    assert got == posted
    assert set(score) == {"id", "score"}
    assert score["id"] == "patient_3"
    assert isinstance(score["score"], float)
