"""The LAS: the per-node quoting agent for ``simulation`` (or, with a TPM, ``tpm``) evidence.

It holds a platform key (Ed25519, created 0600 on first start in its state
directory and kept), signs quotes over ``{type "simulation", measurement,
fspf tag, report data}`` for local callers, and reports its platform id
(SHA-256 of the key's DER SPKI) for a policy's ``platforms:``.

Trust model, honestly: the LAS cannot check that its caller really runs the
measurement it asks to be quoted — it signs for whoever asks.  **Simulation**
evidence proves which code was launched to someone who trusts the host, and
nothing against a host administrator (who can read the key or call the LAS
with any claims).  That is why a session accepts it only with
``security.attestation.tolerate: [debug-mode]`` or ``mode: none``, why the
LAS answers loopback callers only, and why it listens on a non-loopback
address only when explicitly told to (``allow_remote``).

With ``--tpm TCTI`` (:mod:`._tpm_quoter`) the LAS quotes with a TPM 2.0
attestation key instead: ``tpm`` evidence is a TPM2_Quote over the selected
SHA-256 PCRs whose qualifying data binds the same claims.  What it proves:
the platform identity (the AK that ``platforms:`` pins) is rooted in the TPM,
and the quoted PCRs are the TPM's.  What it does not prove: that the
measurement is what runs — the LAS still asserts it for whoever asks, unless
the boot chain extends it into PCRs a policy pins — nor, without an EK
certificate chain (swtpm has none), that the AK is in a genuine TPM: the
operator's enrolment (``cloister las enroll`` on the machine, whose platform
id goes into ``platforms:``) is the anchor.  PCR values can be pinned per
verifier (``TpmVerifier(expected_pcrs=…)``); a policy key for them is future
work.

HTTP API (JSON): ``POST /v1/quote`` ``{"measurement", "fspf_tag",
"report_data"}`` → ``{"type": "simulation", "platform_id", "evidence":
"<base64 of the evidence bytes>"}``; ``GET /v1/platform`` →
``{"platform_id", "public_key": "<PEM>", "evidence_type": "simulation" | "tpm"}``.
Errors are ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import logging
import os
import socket
import stat
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloister import errors
from cloister.attest import _evidence
from cloister.attest._las_client import DEFAULT_PORT
from cloister.attest._tpm_quoter import DEFAULT_PCRS, TpmQuoter

log = logging.getLogger("cloister.las")

DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
KEY_FILE = "platform-key.pem"
_MAX_BODY = 4096


def default_state_dir() -> Path:
    """``$CLOISTER_LAS_STATE``, else ``~/.cloister/las``."""
    env = os.environ.get("CLOISTER_LAS_STATE")
    return Path(env) if env else Path.home() / ".cloister" / "las"


def load_or_create_platform_key(state: Path) -> Ed25519PrivateKey:
    """The platform key in ``state/platform-key.pem``, created (0600, dir 0700) if absent.

    Creation writes a private temporary file and hard-links it into place, so
    two LAS processes starting at once agree on one key and none is
    overwritten.  A key file readable by group or others is refused.
    """
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state / KEY_FILE
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = state / f".{KEY_FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # another LAS won the race: use its key
            os.link(tmp, path)
        tmp.unlink()
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise errors.ConfigError(
            f"platform key {path} has unsafe permissions {mode:04o}",
            details=[f"run: chmod 600 {path}"],
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise errors.ConfigError(
            f"platform key {path} is not a PEM private key",
            details=["move it away to create a new platform (its id changes)"],
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise errors.ConfigError(f"platform key {path} is not an Ed25519 key")
    return key


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` → ``(host, port)``; :class:`errors.ConfigError` if bad."""
    host, sep, port_text = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise errors.ConfigError(
            f"bad listen address {listen!r}", details=["write HOST:PORT, e.g. 127.0.0.1:18766"]
        )
    return host, int(port_text)


def is_loopback_host(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(_is_loopback_ip(str(info[4][0])) for info in infos)


def _is_loopback_ip(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class _Handler(BaseHTTPRequestHandler):
    server: LasServer
    server_version = "cloister-las"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, details: Sequence[str] = ()) -> None:
        self._send(status, {"error": {"code": code, "message": message, "details": list(details)}})

    def _allowed(self) -> bool:
        if self.server.allow_remote or _is_loopback_ip(str(self.client_address[0])):
            return True
        self._error(403, "forbidden", "this LAS quotes for local callers only",
                    ["run the workload on this node, or start the LAS with --allow-remote"])
        return False

    def do_GET(self) -> None:
        if not self._allowed():
            return
        if self.path != "/v1/platform":
            self._error(404, "not_found", f"no route GET {self.path}")
            return
        self._send(200, {
            "platform_id": self.server.platform_id,
            "public_key": self.server.public_key_pem,
            "evidence_type": self.server.evidence_type,
        })

    def do_POST(self) -> None:
        if not self._allowed():
            return
        if self.path != "/v1/quote":
            self._error(404, "not_found", f"no route POST {self.path}")
            return
        try:
            length = int(self.headers.get("Content-Length", "-1"))
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self._error(400 if length < 0 else 413, "bad_request",
                        f"quote request needs a Content-Length of at most {_MAX_BODY} bytes")
            return
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            self._error(400, "bad_request", "quote request body is not JSON")
            return
        fields = ("measurement", "fspf_tag", "report_data")
        if not isinstance(body, dict) or set(body) - set(fields) or "measurement" not in body \
                or "report_data" not in body:
            self._error(400, "bad_request", "quote request must be "
                        '{"measurement", "report_data", optional "fspf_tag"}')
            return
        try:
            if self.server.tpm is not None:
                evidence = self.server.tpm.quote(
                    measurement=body["measurement"], fspf_tag=body.get("fspf_tag"),
                    report_data_hex=body["report_data"],
                )
            else:
                assert self.server.key is not None  # LasServer: a key whenever there is no TPM
                evidence = _evidence.sign_simulation(
                    self.server.key, measurement=body["measurement"],
                    fspf_tag=body.get("fspf_tag"), report_data_hex=body["report_data"],
                )
        except errors.EvidenceError as exc:
            self._error(400, exc.code, exc.message, exc.details)
            return
        log.info("quoted measurement %s… for %s", body["measurement"][:12], self.client_address[0])
        self._send(200, {
            "type": self.server.evidence_type,
            "platform_id": self.server.platform_id,
            "evidence": base64.b64encode(evidence).decode(),
        })


class LasServer(ThreadingHTTPServer):
    """The LAS HTTP server bound to ``(host, port)``, signing with ``key``.

    With ``tpm`` it quotes through that TPM instead (``key`` may then be None).
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], key: Ed25519PrivateKey | None,
                 *, allow_remote: bool = False, tpm: TpmQuoter | None = None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.key = key
        self.tpm = tpm
        self.allow_remote = allow_remote
        if tpm is not None:
            self.evidence_type = tpm.evidence_type
            self.platform_id = tpm.platform_id
            self.public_key_pem = tpm.public_key_pem
            return
        if key is None:
            raise errors.ConfigError("a LAS needs a platform key or a TPM")
        self.evidence_type = _evidence.SIMULATION
        public = key.public_key()
        self.platform_id = _evidence.platform_id(_evidence.spki_der(public))
        self.public_key_pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def make_server(state: Path, listen: str = DEFAULT_LISTEN, *,
                allow_remote: bool = False, tpm: str | None = None,
                pcrs: tuple[int, ...] = DEFAULT_PCRS) -> LasServer:
    """A bound, not yet serving LAS; refuses a non-loopback address unless ``allow_remote``.

    ``tpm`` is a TCTI (``device:/dev/tpmrm0``, ``swtpm:host=…,port=…``): quote
    the SHA-256 ``pcrs`` with that TPM's attestation key instead of a software key.
    """
    host, port = parse_listen(listen)
    if not allow_remote and not is_loopback_host(host):
        raise errors.ConfigError(
            f"refusing to listen on non-loopback address {listen}",
            details=["the LAS signs quotes for whoever asks; serve it on 127.0.0.1 or pass "
                     "--allow-remote if remote hosts must quote (simulation only)"],
        )
    quoter = TpmQuoter(tpm, state, pcrs) if tpm is not None else None
    key = load_or_create_platform_key(state) if quoter is None else None
    try:
        return LasServer((host, port), key, allow_remote=allow_remote, tpm=quoter)
    except OSError as exc:
        raise errors.ConfigError(
            f"cannot listen on {listen}: {exc.strerror}",
            details=["stop the other process on that port or pass another --listen"],
        ) from None
