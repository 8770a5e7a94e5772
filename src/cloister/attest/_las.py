"""The LAS: the per-node quoting agent for ``simulation`` (or, with a TPM, ``tpm``) evidence.

It holds a platform key (Ed25519, created 0600 on first start in its state
directory and kept), and for each caller signs a quote over ``{type,
measurement, fspf tag, report data, uid, gid}`` — where everything but the
report data is what the LAS measured of that caller, never what the caller
said (:mod:`._caller`): the kernel names the process on the other end of the
socket (``SO_PEERCRED``, held by a pidfd), the LAS measures its executable,
``libpython`` and cloister runtime through ``/proc/PID``, refuses a process
into which foreign code can be loaded, and reports its uid and gid.  It
reports its platform id (SHA-256 of the key's DER SPKI) for ``cloister
platform enroll`` or a policy's ``platforms:``.

It serves on a Unix socket, :data:`DEFAULT_SOCKET` (directory
``/run/cloister``, 0755; socket 0666: every local user may ask, and each is
measured).  Loopback TCP (``--listen 127.0.0.1:18766``) is for simulation
only: the caller is then found as the owner of the peer socket in
``/proc/net/tcp``.  A LAS serving other users than its own runs as root
(reading another user's ``/proc/PID`` needs ``CAP_SYS_PTRACE``).

Trust model: **simulation** evidence proves what the LAS measured to someone
who trusts the host and its LAS key, and nothing against a host
administrator (who can read the key).  With ``--tpm TCTI``
(:mod:`cloister.attest.tpm`) the quote is a TPM2_Quote by an attestation key: the
platform identity is the TPM's, the measurement still the LAS's (a host root
can still lie about it unless IMA extends it into PCRs a policy pins).

HTTP API (JSON): ``POST /v1/quote`` ``{"report_data": <64 hex>, "runtime":
<path of the caller's cloister package>, "program": <native executable it
will exec> (optional), "fspf_path": <its protection file> (optional)}`` →
``{"type", "platform_id", "measurement", "uid", "gid", "evidence": <base64>}``;
``GET /v1/platform`` → ``{"platform_id", "public_key": "<PEM>",
"evidence_type"}``.  Errors are ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import logging
import os
import socket
import socketserver
import stat
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cloister import errors
from cloister._address import parse_host_port
from cloister.attest import _caller, _evidence, _registry
from cloister.attest._las_client import DEFAULT_PORT, DEFAULT_SOCKET
from cloister.attest._measure import is_python_interpreter, measure_caller
from cloister.attest._plugin import Quoter
from cloister.attest.simulation import SIMULATION

log = logging.getLogger("cloister.las")

DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
__all__ = ["DEFAULT_LISTEN", "DEFAULT_SOCKET", "LasServer", "make_server"]
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


_QUOTE_FIELDS = frozenset({"report_data", "runtime", "program", "fspf_path"})


def _quote_request(body: Any) -> dict[str, str]:
    """The quote request's fields; :class:`errors.RequestError` when it is not one."""
    if not isinstance(body, dict) or set(body) - _QUOTE_FIELDS or "report_data" not in body \
            or not all(isinstance(v, str) or v is None for v in body.values()):
        hint = ["the LAS measures its caller: send only report_data, and where your runtime, "
                "program and protection file are (runtime, program, fspf_path)"]
        if isinstance(body, dict) and "measurement" in body:
            hint.insert(0, "a caller cannot choose its measurement")
        raise errors.RequestError('quote request must be {"report_data", optional '
                                  '"runtime", "program", "fspf_path"}', details=hint)
    for key in ("runtime", "program", "fspf_path"):
        value = body.get(key)
        if value is not None and (not value.startswith("/") or "\0" in value):
            raise errors.RequestError(f"{key} must be an absolute path")
    return {k: v for k, v in body.items() if v is not None}


def measure_peer(proc: _caller.Process, request: dict[str, str]) -> tuple[str, str | None]:
    """(measurement, fspf tag) of the inspected caller; EvidenceError with every refusal."""
    python = is_python_interpreter(Path(proc.exe.removesuffix(" (deleted)")))
    problems = _caller.problems(proc, python=python)
    if problems:
        raise errors.EvidenceError(
            f"this LAS does not quote for pid {proc.peer.pid} (uid {proc.peer.uid}): "
            "foreign code could run in it", details=problems)
    measurement = measure_caller(proc, runtime=request.get("runtime"),
                                 program=request.get("program"))
    fspf_path = request.get("fspf_path")
    if fspf_path is None:
        return measurement, None
    from cloister import fspf  # noqa: PLC0415 - only for callers with a protected tree

    try:
        return measurement, fspf.tag(proc.path(fspf_path))
    except errors.Error as exc:
        raise errors.EvidenceError(f"cannot read the caller's protection file {fspf_path}: "
                                   f"{exc.message}") from None


class _Handler(BaseHTTPRequestHandler):
    server: LasServer  # type: ignore[assignment]  # both servers are LasServers
    server_version = "cloister-las"
    sys_version = ""
    protocol_version = "HTTP/1.0"

    def address_string(self) -> str:
        return str(self.client_address[0]) if self.client_address else "unix"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, details: Sequence[str] = ()) -> None:
        self._send(status, {"error": {"code": code, "message": message, "details": list(details)}})

    def do_GET(self) -> None:
        if self.path != "/v1/platform":
            self._error(404, "not_found", f"no route GET {self.path}")
            return
        self._send(200, {
            "platform_id": self.server.platform_id,
            "public_key": self.server.public_key_pem,
            "evidence_type": self.server.evidence_type,
        })

    def do_POST(self) -> None:
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
            request = _quote_request(json.loads(self.rfile.read(length)))
            self._send(200, self.server.quote(self.connection, request))
        except ValueError:
            self._error(400, "bad_request", "quote request body is not JSON")
        except errors.RequestError as exc:
            self._error(400, "bad_request", exc.message, exc.details)
        except errors.EvidenceError as exc:
            log.warning("refused: %s", "; ".join(exc.lines()))
            self._error(403, exc.code, exc.message, exc.details)


class LasServer:
    """The quoting logic shared by the Unix-socket and TCP servers: one
    :class:`cloister.attest.Quoter` (made by the plug-in registry) signs what
    the LAS measured of each caller."""

    def _init_quoting(self, quoter: Quoter) -> None:
        self.quoter = quoter
        self.evidence_type = quoter.evidence_type
        self.platform_id = quoter.platform_id
        self.public_key_pem = quoter.public_key_pem

    def peer(self, connection: socket.socket) -> _caller.Peer:
        return _caller.unix_peer(connection)

    def quote(self, connection: socket.socket, request: dict[str, str]) -> dict[str, Any]:
        """Identify, inspect and measure the caller, then sign (steps in :mod:`._caller`)."""
        report = request["report_data"]
        if not _evidence.HEX64.fullmatch(report):
            raise errors.RequestError("report_data must be 64 lower-case hex digits")
        peer = self.peer(connection)
        try:
            proc = _caller.inspect(peer)
            measurement, tag = measure_peer(proc, request)
            if not peer.alive():
                raise errors.EvidenceError("the caller left while it was being measured")
        finally:
            peer.close()
        evidence = self.quoter.quote(measurement=measurement, fspf_tag=tag,
                                     report_data_hex=report, uid=peer.uid, gid=peer.gid)
        log.info("quoted %s… for pid %d uid %d gid %d", measurement[:12], peer.pid,
                 peer.uid, peer.gid)
        return {"type": self.evidence_type, "platform_id": self.platform_id,
                "measurement": measurement, "uid": peer.uid, "gid": peer.gid,
                "evidence": base64.b64encode(evidence).decode()}


class UnixLasServer(LasServer, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The LAS on a Unix socket (the default)."""

    daemon_threads = True

    def __init__(self, path: str, quoter: Quoter) -> None:
        self._init_quoting(quoter)
        socketserver.UnixStreamServer.__init__(self, path, _Handler)
        os.chmod(path, 0o666)  # noqa: S103 - every local user may ask; each is measured
        self.where = f"unix socket {path}"

    def server_close(self) -> None:
        super().server_close()
        with contextlib.suppress(OSError):
            os.unlink(str(self.server_address))


class TcpLasServer(LasServer, ThreadingHTTPServer):
    """The LAS on loopback TCP (simulation only): callers found through /proc/net/tcp."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], quoter: Quoter) -> None:
        self._init_quoting(quoter)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        ThreadingHTTPServer.__init__(self, address, _Handler)
        self.where = f"{address[0]}:{self.server_address[1]}"

    def peer(self, connection: socket.socket) -> _caller.Peer:
        return _caller.tcp_peer(connection)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return _is_loopback_ip(str(client_address[0]))


def _prepare_socket(path: str) -> None:
    """Create the socket's directory (0755); remove a stale socket, refuse anything else."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise errors.ConfigError(f"{path} exists and is not a socket",
                                 details=["remove it or pass another --socket"])
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody answers: a leftover of a LAS that died
        return
    finally:
        probe.close()
    raise errors.ConfigError(f"another LAS already serves {path}",
                             details=["stop it, or pass another --socket"])


def make_server(state: Path, listen: str | None = None, *, socket_path: str | None = None,
                evidence: str = SIMULATION,
                options: Mapping[str, str] | None = None) -> UnixLasServer | TcpLasServer:
    """A bound, not yet serving LAS: on ``socket_path`` (default :data:`DEFAULT_SOCKET`), or
    with ``listen`` on loopback TCP (simulation only).

    ``evidence`` names the evidence type to quote, ``options`` its quoter's
    settings (for ``tpm``: ``tcti`` such as ``device:/dev/tpmrm0`` and
    ``pcrs``); the plug-in registry makes the quoter.
    """
    if listen is not None:
        if socket_path is not None:
            raise errors.ConfigError("give either --socket or --listen, not both")
        if evidence != SIMULATION:
            raise errors.ConfigError("--listen serves simulation evidence only",
                                     details=[f"serve a {evidence} LAS on its Unix socket"])
        host, port = parse_listen(listen)
        if not is_loopback_host(host):
            raise errors.ConfigError(
                f"refusing to listen on non-loopback address {listen}",
                details=["the LAS measures its callers through this host's /proc: it "
                         "serves loopback TCP (127.0.0.1) or its Unix socket only"],
            )
        quoter = _registry.make_quoter(evidence, state, options or {})
        try:
            return TcpLasServer((host, port), quoter)
        except OSError as exc:
            raise errors.ConfigError(
                f"cannot listen on {listen}: {exc.strerror}",
                details=["stop the other process on that port or pass another --listen"],
            ) from None
    path = socket_path or DEFAULT_SOCKET
    quoter = _registry.make_quoter(evidence, state, options or {})
    try:
        _prepare_socket(path)
        return UnixLasServer(path, quoter)
    except OSError as exc:
        raise errors.ConfigError(
            f"cannot serve on {path}: {exc.strerror}",
            details=["create its directory with write access for the LAS, or pass --socket"],
        ) from None
