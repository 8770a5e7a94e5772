"""`cloister las serve` as a real process: quotes, stable platform id, local callers only."""

from __future__ import annotations

import http.client
import json
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloister import errors
from cloister.attest import LasClient, SimulationVerifier, VerifiedClaims, measure, report_data

CLI = str(Path(sys.executable).parent / "cloister")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Las:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.port = _free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [CLI, "las", "serve", "--state", str(self.state), "--listen", self.addr],
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


@pytest.fixture
def las(tmp_path: Path) -> Iterator[Las]:
    server = Las(tmp_path / "las-state")
    server.start()
    yield server
    server.stop()


def test_quote_verifies_and_binds_the_report_data(las: Las) -> None:
    client = LasClient(las.addr)
    nonce, public = b"n" * 32, b"k" * 32
    evidence = client.quote(measure(), "ab" * 16, report_data(nonce, public))
    claims = SimulationVerifier().verify(evidence, expected_report_data=report_data(nonce, public))
    assert isinstance(claims, VerifiedClaims)
    assert claims.measurement == measure() and claims.fspf_tag == "ab" * 16
    assert claims.report_data == report_data(nonce, public)
    assert claims.platform_id == client.platform()["platform_id"]


def test_platform_id_survives_restart_and_key_is_0600(las: Las) -> None:
    first = LasClient(las.addr).platform()
    key_file = las.state / "platform-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    las.stop()
    las.start()
    assert LasClient(las.addr).platform() == first
    shown = subprocess.run([CLI, "las", "platform-id", "--las", las.addr],
                           capture_output=True, text=True, check=True)
    assert shown.stdout == first["platform_id"] + "\n"


def test_malformed_quote_request_is_refused_with_reasons(las: Las) -> None:
    with pytest.raises(errors.EvidenceError, match="cannot quote malformed claims") as err:
        LasClient(las.addr).quote("not-hex", None, b"short")
    assert len(err.value.details) == 2
    conn = http.client.HTTPConnection("127.0.0.1", las.port, timeout=10)
    conn.request("POST", "/v1/quote", body=b"[1]", headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 400 and "error" in json.loads(response.read())
    conn.close()


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent for UDP connect
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_non_loopback_caller_gets_403(las: Las) -> None:
    source = _non_loopback_address()
    if source is None:
        pytest.skip("this host has no non-loopback IPv4 address to call from")
    with socket.create_connection(("127.0.0.1", las.port), timeout=10,
                                  source_address=(source, 0)) as sock:
        sock.sendall(b"GET /v1/platform HTTP/1.0\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 403") and b"local callers only" in answer


def test_non_loopback_listen_is_refused_without_allow_remote(tmp_path: Path) -> None:
    result = subprocess.run(
        [CLI, "las", "serve", "--state", str(tmp_path), "--listen", f"0.0.0.0:{_free_port()}"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "refusing to listen on non-loopback address" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "platform-key.pem").exists()
