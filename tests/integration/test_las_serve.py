"""`cloister las serve` as a real process: it measures its caller, whatever the caller claims."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloister import errors
from cloister.attest import LasClient, SimulationVerifier, VerifiedClaims, measure, report_data

CLI = str(Path(sys.executable).parent / "cloister")
RD = report_data(b"n" * 32, b"k" * 32)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Las:
    def __init__(self, state: Path, *, tcp: bool = False) -> None:
        self.state = state
        self.port = _free_port()
        self.tcp = tcp
        self.addr = f"127.0.0.1:{self.port}" if tcp else str(state.parent / "las.sock")
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        where = ["--listen", self.addr] if self.tcp else ["--socket", self.addr]
        self.proc = subprocess.Popen(
            [CLI, "las", "serve", "--state", str(self.state), *where],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 30  # readiness wait, not an assertion on timing
        while True:
            try:
                LasClient(self.addr, timeout=2).platform()
                return
            except errors.Unreachable:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"LAS did not start: {self.proc.stderr.read()}")  # type: ignore[union-attr]
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.communicate(timeout=30)

    def curl(self, body: dict[str, Any], *prefix: str) -> tuple[int, dict[str, Any]]:
        """A quote request from curl, a native program: (status, answer)."""
        where = [f"http://{self.addr}/v1/quote"] if self.tcp else [
            "--unix-socket", self.addr, "http://las/v1/quote"]
        done = subprocess.run(
            [*prefix, "curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-H",
             "Content-Type: application/json", "--data-binary", json.dumps(body), *where],
            capture_output=True, text=True, timeout=60, check=True)
        text, _, status = done.stdout.rpartition("\n")
        return int(status), json.loads(text)


@pytest.fixture
def las(tmp_path: Path) -> Iterator[Las]:
    server = Las(tmp_path / "las-state")
    server.start()
    yield server
    server.stop()


def _verified(answer: dict[str, Any]) -> VerifiedClaims:
    claims = SimulationVerifier().verify(base64.b64decode(answer["evidence"]),
                                         expected_report_data=RD)
    assert isinstance(claims, VerifiedClaims), claims
    return claims


def test_quote_is_of_the_calling_process_and_its_uid(las: Las) -> None:
    status, answer = las.curl({"report_data": RD.hex()})
    assert status == 200, answer
    claims = _verified(answer)
    curl = shutil.which("curl")
    assert curl is not None
    # what the kernel says runs on the other end of the socket, not what it said
    assert claims.measurement == measure(curl) == answer["measurement"]
    assert (claims.uid, claims.gid) == (os.getuid(), os.getgid())
    assert claims.report_data == RD and claims.fspf_tag is None
    assert claims.platform_id == LasClient(las.addr).platform()["platform_id"]


def test_a_caller_cannot_choose_its_measurement(las: Las) -> None:
    status, answer = las.curl({"report_data": RD.hex(), "measurement": "ab" * 32})
    assert status == 400
    assert answer["error"]["details"][0] == "a caller cannot choose its measurement"


def test_a_python_caller_that_is_not_cloister_run_is_refused(las: Las) -> None:
    with pytest.raises(errors.EvidenceError) as err:
        LasClient(las.addr).quote(RD, runtime=str(Path(measure.__code__.co_filename).parents[1]))
    assert err.value.code != "caller_not_measurable"
    assert any("not `python -I -m cloister.cli run`" in d for d in err.value.details)


def test_platform_id_survives_restart_key_0600_socket_for_everyone(las: Las) -> None:
    first = LasClient(las.addr).platform()
    assert stat.S_IMODE((las.state / "platform-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(os.stat(las.addr).st_mode) == 0o666
    las.proc.kill()  # type: ignore[union-attr]
    las.proc.wait()  # type: ignore[union-attr]
    assert os.path.exists(las.addr)  # a kill -9 leaves the socket: the next start replaces it
    las.start()
    assert LasClient(las.addr).platform() == first
    shown = subprocess.run([CLI, "las", "platform-id", "--las", las.addr],
                           capture_output=True, text=True, check=True)
    assert shown.stdout == first["platform_id"] + "\n"
    again = subprocess.run([CLI, "las", "serve", "--state", str(las.state), "--socket", las.addr],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "another LAS already serves" in again.stderr


def test_malformed_quote_request_is_refused(las: Las) -> None:
    status, answer = las.curl({"report_data": "short"})
    assert status == 400 and "report_data must be 64" in answer["error"]["message"]
    status, answer = las.curl({"report_data": RD.hex(), "runtime": "relative/path"})
    assert status == 400 and "absolute path" in answer["error"]["message"]


def test_loopback_tcp_finds_its_caller_through_proc(tmp_path: Path) -> None:
    server = Las(tmp_path / "las-state", tcp=True)
    server.start()
    try:
        status, answer = server.curl({"report_data": RD.hex()})
        assert status == 200, answer
        curl = shutil.which("curl")
        assert curl is not None
        assert _verified(answer).measurement == measure(curl)
    finally:
        server.stop()


def test_non_loopback_listen_and_tpm_over_tcp_are_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [CLI, "las", "serve", "--state", str(tmp_path), "--listen", f"0.0.0.0:{_free_port()}"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "refusing to listen on non-loopback address" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "platform-key.pem").exists()
    result = subprocess.run(
        [CLI, "las", "serve", "--state", str(tmp_path), "--listen", f"127.0.0.1:{_free_port()}",
         "--tpm", "device:/dev/null"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and "simulation evidence only" in result.stderr
