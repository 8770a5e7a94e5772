"""TPM evidence against a real software TPM: a LAS on swtpm quotes, the verifier and the
decision accept it, and every attack on it is refused with its reason named."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloister import errors
from cloister.attest import (
    LasClient,
    TpmVerifier,
    VerifiedClaims,
    _evidence,
    generate_ephemeral_key,
    measure,
    public_key_bytes_of,
    report_data,
    simulation,
)
from cloister.cas._decide import Decision, decide
from cloister.policy import AttestationSecurity, AttestationVariant, Service

CLI = str(Path(sys.executable).parent / "cloister")
#: the quotes come from curl, a native program the LAS measures (it takes no one's word)
M = measure("curl")
TAG = None


def _free_port_pair() -> int:
    """A port P with P+1 free too (swtpm's server and control ports)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < 65535:
            with socket.socket() as other:
                try:
                    other.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two adjacent free ports")


def require_swtpm() -> None:
    if shutil.which("swtpm") is None:
        pytest.skip("swtpm not installed: apt-get install swtpm swtpm-tools")
    if importlib.util.find_spec("tpm2_pytss") is None:
        pytest.skip("tpm2-pytss not installed: apt-get install libtss2-dev && "
                    "pip install tpm2-pytss")


class Swtpm:
    """``swtpm socket`` on free TCP ports with its state in ``state``."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.port = _free_port_pair()
        self.tcti = f"swtpm:host=127.0.0.1,port={self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["swtpm", "socket", "--tpmstate", f"dir={self.state}", "--tpm2",
             "--server", f"type=tcp,port={self.port}",
             "--ctrl", f"type=tcp,port={self.port + 1}",
             "--flags", "not-need-init,startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30  # readiness wait, not a timing assertion
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port + 1), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.proc.stderr.read()  # type: ignore[union-attr]
                    raise RuntimeError(f"swtpm did not start: {err!r}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.communicate(timeout=30)


class TpmLas:
    def __init__(self, state: Path, tcti: str) -> None:
        # a directory every user may pass, so that another uid can ask this LAS too
        self.public = Path(tempfile.mkdtemp(prefix="cloister-tpm-las-"))
        self.public.chmod(0o755)
        self.addr = str(self.public / "las.sock")
        self.state, self.tcti = state, tcti
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [CLI, "las", "serve", "--state", str(self.state), "--socket", self.addr,
             "--tpm", self.tcti],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                LasClient(self.addr, timeout=2).platform()
                return
            except errors.Unreachable:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    err = self.proc.stderr.read()  # type: ignore[union-attr]
                    raise RuntimeError(f"LAS did not start: {err}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.communicate(timeout=30)
        shutil.rmtree(self.public, ignore_errors=True)


@pytest.fixture(scope="module")
def swtpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swtpm]:
    require_swtpm()
    tpm = Swtpm(tmp_path_factory.mktemp("swtpm"))
    tpm.start()
    try:
        yield tpm
    finally:
        tpm.stop()


@pytest.fixture(scope="module")
def las(swtpm: Swtpm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TpmLas]:
    server = TpmLas(tmp_path_factory.mktemp("las"), swtpm.tcti)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _quote(las: TpmLas, nonce: bytes, key: bytes, *prefix: str) -> bytes:
    """A quote for curl (``prefix``: e.g. setpriv to run it as another user)."""
    body = json.dumps({"report_data": report_data(nonce, key).hex()})
    done = subprocess.run([*prefix, "curl", "-sS", "--fail-with-body", "--unix-socket", las.addr,
                           "-H", "Content-Type: application/json", "--data-binary", body,
                           "http://las/v1/quote"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return base64.b64decode(json.loads(done.stdout)["evidence"])


def _decide(evidence: bytes, nonce: bytes, key: bytes, *, platforms: tuple[str, ...],
            tolerate: frozenset[str] = frozenset(), uid: int | None = None) -> Decision:
    service = Service(name="api", attestation=(AttestationVariant(mrenclaves=(M,)),),
                      platforms=platforms, fspf_tag=TAG, uid=uid)
    return decide(service=service, attestation=AttestationSecurity(tolerate=tolerate),
                  evidence=evidence, nonce=nonce, nonce_ok=True, ephemeral_public_key=key)


def _tamper(evidence: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    obj = json.loads(evidence)
    change(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _flip(field: str, index: int) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        raw = bytearray(base64.b64decode(obj[field]))
        raw[index] ^= 0x01
        obj[field] = base64.b64encode(bytes(raw)).decode()
    return change


@pytest.fixture(scope="module")
def honest(las: TpmLas) -> tuple[bytes, bytes, bytes, str]:
    """``(evidence, nonce, ephemeral key, platform id)`` of one honest quote."""
    nonce, key = os.urandom(32), public_key_bytes_of(generate_ephemeral_key())
    return _quote(las, nonce, key), nonce, key, LasClient(las.addr).platform()["platform_id"]


def test_las_on_swtpm_serves_tpm_evidence_that_a_hardware_policy_accepts(
        las: TpmLas, honest: tuple[bytes, bytes, bytes, str]) -> None:
    evidence, nonce, key, platform = honest
    info = LasClient(las.addr).platform()
    assert info["evidence_type"] == "tpm"
    assert json.loads(evidence)["type"] == "tpm"
    assert json.loads(evidence)["ek_certificate"] is None  # swtpm: no EK certificate
    decision = _decide(evidence, nonce, key, platforms=(platform,))
    assert decision.reasons == []
    assert decision.claims is not None and decision.claims.needs_tolerations == {}
    # the AK's public area is recorded in the LAS state, readable by its owner only
    assert (las.state / "tpm-ak.pub").stat().st_mode & 0o077 == 0


def test_enroll_prints_the_same_platform_id_and_the_pcrs(
        las: TpmLas, swtpm: Swtpm, honest: tuple[bytes, bytes, bytes, str],
        tmp_path: Path) -> None:
    done = subprocess.run([CLI, "las", "enroll", "--tpm", swtpm.tcti, "--state", str(tmp_path),
                           "--show-pcrs", "--pcrs", "0,7"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == honest[3]
    assert [line.split()[0] for line in lines[1:]] == ["sha256:0", "sha256:7"]
    assert "no EK certificate" in done.stderr


def test_same_policy_refuses_simulation_evidence() -> None:
    sim_key = Ed25519PrivateKey.generate()
    nonce, key = os.urandom(32), public_key_bytes_of(generate_ephemeral_key())
    evidence = simulation.sign_simulation(sim_key, measurement=M, fspf_tag=TAG,
                                         report_data_hex=report_data(nonce, key).hex(),
                                         uid=0, gid=0)
    pid = _evidence.platform_id(_evidence.spki_der(sim_key.public_key()))
    reasons = _decide(evidence, nonce, key, platforms=(pid,)).reasons
    assert reasons == ["evidence type simulation not tolerated: add debug-mode to "
                       "security.attestation.tolerate"]


def test_b_another_uid_gets_a_quote_of_itself_which_a_uid_pin_refuses(
        las: TpmLas, honest: tuple[bytes, bytes, bytes, str]) -> None:
    """(b) through a TPM-backed LAS: uid 65534 asking gets evidence of its own process and
    uid (the TPM binds them), and a session pinned to the workload's uid refuses it."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    if os.geteuid() != 0:
        pytest.skip("switching to uid 65534 needs root")
    platform = honest[3]
    nonce, key = os.urandom(32), public_key_bytes_of(generate_ephemeral_key())
    evidence = _quote(las, nonce, key, "setpriv", "--reuid", "65534", "--regid", "65534",
                      "--clear-groups")
    claims = json.loads(evidence)["claims"]
    assert (claims["uid"], claims["gid"]) == (65534, 65534)
    assert claims["measurement"] == M  # its own program, curl: it cannot claim another
    reasons = _decide(evidence, nonce, key, platforms=(platform,), uid=os.getuid()).reasons
    assert reasons == [f"the caller runs as uid 65534, service api requires uid {os.getuid()}"]
    # a uid cannot be rewritten in the clear claims: the quote binds it
    def lie(obj: dict[str, Any]) -> None:
        obj["claims"]["uid"] = os.getuid()
    assert any("qualifying data does not bind" in r for r in _decide(
        _tamper(evidence, lie), nonce, key, platforms=(platform,), uid=os.getuid()).reasons)


def test_ak_not_in_platforms_is_refused(honest: tuple[bytes, bytes, bytes, str]) -> None:
    evidence, nonce, key, platform = honest
    reasons = _decide(evidence, nonce, key, platforms=("00" * 32,)).reasons
    assert len(reasons) == 1 and reasons[0].startswith(f"platform {platform} not in the ")


def test_replayed_quote_for_an_old_nonce_is_refused(
        honest: tuple[bytes, bytes, bytes, str]) -> None:
    evidence, _old_nonce, key, platform = honest
    reasons = _decide(evidence, os.urandom(32), key, platforms=(platform,)).reasons
    assert reasons == ["report data is not SHA256(nonce ‖ ephemeral public key): the evidence "
                       "is bound to another key or nonce"]


def test_qualifying_data_binding_another_key_is_refused(
        las: TpmLas, honest: tuple[bytes, bytes, bytes, str]) -> None:
    _, nonce, key, platform = honest
    attacker_key = public_key_bytes_of(generate_ephemeral_key())
    stolen = _quote(las, nonce, attacker_key)  # the TPM bound the attacker's key
    # as is, the binding step refuses; rewriting the clear claims is caught by the quote
    assert _decide(stolen, nonce, key, platforms=(platform,)).reasons[0].startswith(
        "report data is not SHA256")

    def rebind(obj: dict[str, Any]) -> None:
        obj["claims"]["report_data"] = report_data(nonce, key).hex()
    reasons = _decide(_tamper(stolen, rebind), nonce, key, platforms=(platform,)).reasons
    assert reasons == ["quote's qualifying data does not bind the claimed measurement, fspf "
                       "tag, report data, uid and gid (claims altered, or quote made for another "
                       "key or nonce)"]


def test_altered_measurement_claim_is_refused(honest: tuple[bytes, bytes, bytes, str]) -> None:
    evidence, nonce, key, _ = honest

    def remeasure(obj: dict[str, Any]) -> None:
        obj["claims"]["measurement"] = "cd" * 32
    reasons = TpmVerifier().verify(_tamper(evidence, remeasure),
                                   expected_report_data=report_data(nonce, key))
    assert isinstance(reasons, list) and "qualifying data does not bind" in reasons[0]


@pytest.mark.parametrize("index", [0, 31, 70])
def test_flipped_signature_byte_is_refused(honest: tuple[bytes, bytes, bytes, str],
                                           index: int) -> None:
    evidence, nonce, key, platform = honest
    reasons = _decide(_tamper(evidence, _flip("signature", index)), nonce, key,
                      platforms=(platform,)).reasons
    assert len(reasons) == 1
    assert ("signature is invalid" in reasons[0] or "not ECDSA/SHA-256" in reasons[0]
            or "trailing bytes" in reasons[0] or "truncated" in reasons[0]), reasons


@pytest.mark.parametrize(("index", "also"), [
    (0, "magic"),            # TPM_GENERATED_VALUE
    (4, "not a quote"),      # TPM_ST_ATTEST_QUOTE
    (40, None),              # in qualifiedSigner
    (90, None),              # in clockInfo
    (-1, None),              # last byte of pcrDigest
])
def test_flipped_attest_byte_is_refused(honest: tuple[bytes, bytes, bytes, str], index: int,
                                        also: str | None) -> None:
    evidence, nonce, key, platform = honest
    reasons = _decide(_tamper(evidence, _flip("attest", index)), nonce, key,
                      platforms=(platform,)).reasons
    assert any("TPM quote signature is invalid" in r for r in reasons), reasons
    if also is not None:
        assert any(also in r for r in reasons), reasons


def test_pcr_value_not_matching_the_quoted_digest_is_refused(
        honest: tuple[bytes, bytes, bytes, str]) -> None:
    evidence, nonce, key, platform = honest

    def lie(obj: dict[str, Any]) -> None:
        obj["pcrs"]["sha256"]["0"] = "ee" * 32
    reasons = _decide(_tamper(evidence, lie), nonce, key, platforms=(platform,)).reasons
    assert len(reasons) == 1 and reasons[0].startswith(
        "reported PCR values do not match the quoted PCR digest")


def test_pcr_pinned_to_another_value_is_refused(honest: tuple[bytes, bytes, bytes, str]) -> None:
    evidence = honest[0]
    values = json.loads(evidence)["pcrs"]["sha256"]
    assert isinstance(TpmVerifier({0: values["0"], 7: values["7"]}).verify(
        evidence, expected_report_data=b""), VerifiedClaims)
    reasons = TpmVerifier({7: "77" * 32}).verify(evidence, expected_report_data=b"")
    assert reasons == [f"PCR sha256:7 is {values['7'][:12]}…, expected 777777777777…"]


def test_extended_pcr_shows_in_the_next_quote(swtpm: Swtpm, las: TpmLas,
                                              honest: tuple[bytes, bytes, bytes, str]) -> None:
    if shutil.which("tpm2_pcrextend") is None:
        pytest.skip("tpm2-tools not installed: apt-get install tpm2-tools")
    before = json.loads(honest[0])["pcrs"]["sha256"]["7"]
    done = subprocess.run(["tpm2_pcrextend", "-T", swtpm.tcti, "7:sha256=" + "42" * 32],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    nonce, key = os.urandom(32), public_key_bytes_of(generate_ephemeral_key())
    evidence = _quote(las, nonce, key)
    after = json.loads(evidence)["pcrs"]["sha256"]["7"]
    assert after != before
    assert _decide(evidence, nonce, key, platforms=(honest[3],)).reasons == []
    reasons = TpmVerifier({7: before}).verify(evidence, expected_report_data=b"")
    assert isinstance(reasons, list) and reasons[0].startswith("PCR sha256:7 is")


def test_las_refuses_to_start_on_another_tpm(las: TpmLas, tmp_path: Path) -> None:
    other = Swtpm(tmp_path / "other-tpm")
    other.start()
    try:
        done = subprocess.run([CLI, "las", "enroll", "--tpm", other.tcti, "--state",
                               str(las.state)], capture_output=True, text=True)
    finally:
        other.stop()
    assert done.returncode != 0
    assert "another attestation key than the one enrolled" in done.stderr
    assert "Traceback" not in done.stderr
