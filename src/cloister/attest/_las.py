"""The LAS: the per-node quoting agent, for any evidence type that has a quoter.

It holds one :class:`cloister.attest.Quoter` of the evidence type it was
started for (made by the plug-in registry: ``simulation`` signs with a
platform key created 0600 in the state directory, ``tpm`` quotes with a
TPM, …), quotes ``{measurement, fspf tag, report data}`` for local callers,
and reports its platform id for a policy's ``platforms:``.  It knows no
evidence type itself.

Trust model, honestly: the LAS cannot check that its caller really runs the
measurement it asks to be quoted — it signs for whoever asks.  **Simulation**
evidence proves which code was launched to someone who trusts the host, and
nothing against a host administrator (who can read the key or call the LAS
with any claims).  That is why a session accepts it only with
``security.attestation.tolerate: [debug-mode]`` or ``mode: none``, why the
LAS answers loopback callers only, and why it listens on a non-loopback
address only when explicitly told to (``allow_remote``).

With a hardware quoter (``tpm``: :mod:`cloister.attest.tpm`) the platform
identity is the hardware's; what each type proves is said in its plug-in.
The measurement is still what the LAS asserts for its caller, unless the
hardware's own measurements (pinned PCRs, launch digests) cover it.

HTTP API (JSON): ``POST /v1/quote`` ``{"measurement", "fspf_tag",
"report_data"}`` → ``{"type": "<evidence type>", "platform_id", "evidence":
"<base64 of the evidence bytes>"}``; ``GET /v1/platform`` →
``{"platform_id", "public_key": "<PEM>", "evidence_type": "<evidence type>"}``.
Errors are ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cloister import errors
from cloister._address import parse_host_port
from cloister.attest import _registry
from cloister.attest._las_client import DEFAULT_PORT
from cloister.attest._plugin import Quoter
from cloister.attest.simulation import SIMULATION

log = logging.getLogger("cloister.las")

DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
_MAX_BODY = 4096


def default_state_dir() -> Path:
    """``$CLOISTER_LAS_STATE``, else ``~/.cloister/las``."""
    env = os.environ.get("CLOISTER_LAS_STATE")
    return Path(env) if env else Path.home() / ".cloister" / "las"


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` → ``(host, port)``; :class:`errors.ConfigError` if bad."""
    where = parse_host_port(listen, default_port=None, what="listen address",
                            example="127.0.0.1:18766", listen=True)
    return where.host, where.port


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
            evidence = self.server.quoter.quote(
                measurement=body["measurement"], fspf_tag=body.get("fspf_tag"),
                report_data_hex=body["report_data"],
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
    """The LAS HTTP server bound to ``(host, port)``, quoting with ``quoter``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], quoter: Quoter,
                 *, allow_remote: bool = False) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.quoter = quoter
        self.allow_remote = allow_remote
        self.evidence_type = quoter.evidence_type
        self.platform_id = quoter.platform_id
        self.public_key_pem = quoter.public_key_pem


def make_server(state: Path, listen: str = DEFAULT_LISTEN, *,
                allow_remote: bool = False, evidence: str = SIMULATION,
                options: Mapping[str, str] | None = None) -> LasServer:
    """A bound, not yet serving LAS; refuses a non-loopback address unless ``allow_remote``.

    ``evidence`` names the evidence type to quote, ``options`` its quoter's
    settings (for ``tpm``: ``tcti`` such as ``device:/dev/tpmrm0`` and
    ``pcrs``); the plug-in registry makes the quoter.
    """
    host, port = parse_listen(listen)
    if not allow_remote and not is_loopback_host(host):
        raise errors.ConfigError(
            f"refusing to listen on non-loopback address {listen}",
            details=["the LAS signs quotes for whoever asks; serve it on 127.0.0.1 or pass "
                     "--allow-remote if remote hosts must quote (simulation only)"],
        )
    quoter = _registry.make_quoter(evidence, state, options or {})
    try:
        return LasServer((host, port), quoter, allow_remote=allow_remote)
    except OSError as exc:
        raise errors.ConfigError(
            f"cannot listen on {listen}: {exc.strerror}",
            details=["stop the other process on that port or pass another --listen"],
        ) from None
