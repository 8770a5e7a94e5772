"""Assemble and run the CAS: state directory, identity, store, app, HTTPS server.

:class:`ServerConfig` holds every limit explicitly.  :func:`build_server`
creates (first start) or loads (restart) the state: identity files and master
key 0600, ``cas.db``, ``audit.log``; the state directory itself 0700.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from cheroot import wsgi

from cloister import errors
from cloister._address import parse_host_port
from cloister.attest import load_collateral
from cloister.cas._app import DEFAULT_MAX_BODY, AppContext, CASApp
from cloister.cas._attestation import COLLATERAL_EXTENSION
from cloister.cas._audit import AUDIT_FILE, AuditLog
from cloister.cas._engine import SecretEngine
from cloister.cas._identity import CASIdentity
from cloister.cas._keys import Sealer, load_or_create_master_key
from cloister.cas._metrics import Metrics
from cloister.cas._routes import Route, route_table
from cloister.cas._sessions import SessionService
from cloister.cas._stores import open_identity, open_store_url
from cloister.cas._tls import ClientCertAdapter, IdentityGateway
from cloister.cas._wire_errors import JSONErrorConnection
from cloister.cas.store import Store
from cloister.policy import load_session

_log = logging.getLogger(__name__)

MASTER_KEY_FILE = "master.key"
DEFAULT_LISTEN = ("0.0.0.0", 8081)  # noqa: S104 — a CAS serves the network by design


@dataclass(frozen=True)
class ServerConfig:
    state: Path
    #: ``sqlite`` (default: ``STATE/cas.db``), ``sqlite:///ABS/PATH`` or
    #: ``postgresql://…`` shared by replicas (see :mod:`cloister.cas._stores`)
    store_url: str = "sqlite"
    listen: tuple[str, int] = DEFAULT_LISTEN
    master_key_file: Path | None = None
    sans: tuple[str, ...] = ()
    max_body: int = DEFAULT_MAX_BODY
    max_header: int = 64 * 1024
    threads: int = 16
    max_threads: int = 64
    #: seconds a connection may stay idle or take to send a request
    timeout: int = 30
    extra_routes: tuple[Route, ...] = field(default=())
    #: attestation collateral (certificates, TCB info, CRLs; ``trusted-roots/`` adds roots)
    #: read once at start and given to every verifier
    collateral: Path | None = None


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; no host: every address) → ``(host, port)``."""
    where = parse_host_port(value, default_port=None, what="listen address",
                            example="0.0.0.0:8081", empty_host="0.0.0.0", listen=True)  # noqa: S104
    return where.host, where.port


def prepare_state(state: Path) -> None:
    """Create the state directory 0700, or refuse one that others can access."""
    try:
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise errors.ConfigError(f"cannot create state directory {state}: {exc.strerror}") from None
    mode = state.stat().st_mode & 0o777
    if mode & 0o077:
        raise errors.ConfigError(
            f"state directory {state} has unsafe permissions {mode:04o}",
            details=[f"run: chmod 700 {state}"],
        )


def default_engine() -> SecretEngine:
    """The secret engine backed by :mod:`cloister.secrets`."""
    from cloister.cas._engine_secrets import SecretsEngine  # noqa: PLC0415

    return SecretsEngine()


def open_store(config: ServerConfig) -> Store:
    """The store of ``config`` opened with its master key (created on first start)."""
    prepare_state(config.state)
    key_path = config.master_key_file or config.state / MASTER_KEY_FILE
    key = load_or_create_master_key(key_path, create=config.master_key_file is None)
    return open_store_url(config.store_url, config.state, Sealer(key))


def build_context(
    store: Store, audit: AuditLog, engine: SecretEngine, identity: CASIdentity | None,
    *, max_body: int = DEFAULT_MAX_BODY,
) -> AppContext:
    metrics = Metrics()
    metrics.gauge("cloister_cas_sessions", "Number of session names.", store.session_count)
    return AppContext(
        store=store, sessions=SessionService(store, engine, audit), audit=audit,
        metrics=metrics, identity=identity, max_body=max_body,
    )


class CASServer:
    """A configured CAS: call :meth:`serve_forever` (blocks) or :meth:`start`/:meth:`stop`."""

    def __init__(self, config: ServerConfig, engine: SecretEngine | None = None) -> None:
        self.config = config
        self.store = open_store(config)
        self.identity = open_identity(self.store, config.store_url, config.state, config.sans)
        self.audit = AuditLog(config.state / AUDIT_FILE)
        self.context = build_context(
            self.store, self.audit, engine or default_engine(), self.identity,
            max_body=config.max_body,
        )
        if config.collateral is not None:
            self.context.extensions[COLLATERAL_EXTENSION] = load_collateral(config.collateral)
        self.app = CASApp(self.context, route_table(config.extra_routes))
        server = wsgi.Server(
            config.listen, self.app, numthreads=config.threads, max=config.max_threads,
            request_queue_size=64, timeout=config.timeout, server_name="cloister-cas",
        )
        server.gateway = IdentityGateway
        server.ConnectionClass = JSONErrorConnection  # cheroot's own 4xx in JSON too
        server.ssl_adapter = ClientCertAdapter(
            str(self.identity.server_cert_path), str(self.identity.server_key_path)
        )
        server.max_request_header_size = config.max_header
        server.max_request_body_size = 0  # the app enforces max_body with a JSON 413
        self.http = server
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        addr: Any = self.http.bind_addr
        return str(addr[0]), int(addr[1])

    def start(self) -> None:
        """Bind and serve in a background thread."""
        try:
            self.http.prepare()
        except OSError as exc:
            host, port = self.config.listen
            raise errors.ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                details=["choose another --listen address or stop what uses the port"],
            ) from None
        self._thread = threading.Thread(target=self.http.serve, name="cas-http", daemon=True)
        self._thread.start()
        host, port = self.address
        _log.info("CAS listening on https://%s:%d (state %s)", host, port, self.config.state)

    def stop(self) -> None:
        self.http.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.store.close()
        self.audit.close()

    def serve_forever(self, stop_signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Serve until one of ``stop_signals``; then stop cleanly."""
        done = threading.Event()

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            _log.info("received signal %d, stopping", signum)
            done.set()

        for sig in stop_signals:
            signal.signal(sig, _on_signal)
        self.start()
        try:
            while not done.wait(1.0):
                if self._thread is not None and not self._thread.is_alive():
                    raise errors.StoreError("the CAS HTTP server stopped unexpectedly")
        finally:
            self.stop()


def check_state(config: ServerConfig) -> list[str]:
    """Integrity check of a (stopped or running) CAS state: store and every sealed secret."""
    store = open_store(config)
    try:
        problems = store.check_integrity()
        for name in store.names():
            for record in store.history(name):
                if session_digest_of(record.text) != record.hash:
                    problems.append(f"session {name!r} version {record.hash}: text does not "
                                    "match its hash")
        return problems
    finally:
        store.close()


def session_digest_of(text: str) -> str:
    """The hash a stored text must have ("" if it no longer parses)."""
    try:
        return load_session(text).digest
    except errors.Error:
        return ""


__all__ = ["CASServer", "ServerConfig", "check_state"]
