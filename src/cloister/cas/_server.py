"""Assemble and run the CAS: state directory, seal, store, identity, app, HTTPS server.

:class:`ServerConfig` says where things are; its ``limits``
(:class:`cloister.cas.Limits`) hold every protective limit.  :class:`CASServer`
refuses a state directory that is not initialised (``cloister cas init``) or
is of an earlier release (``cloister cas migrate-state``).  A ``file`` or
``tpm`` seal unseals at start; a ``shamir`` seal starts the CAS *sealed*
(:mod:`cloister.cas._unseal`) until K shares arrive, then the same process
switches to the full app and to its real server key — the TLS identity is
the same across restarts and unseals.  The state directory itself is 0700.
With ``processes`` > 1 (``file`` seal) several CAS processes serve one port
(:mod:`cloister.cas._processes`).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, cast

from cloister import errors
from cloister._address import parse_host_port
from cloister._files import check_private_file
from cloister.attest import load_collateral
from cloister.cas import _unseal
from cloister.cas._app import AppContext, CASApp, StartResponse
from cloister.cas._attestation import COLLATERAL_EXTENSION
from cloister.cas._audit import AUDIT_FILE, AuditLog
from cloister.cas._engine import SecretEngine
from cloister.cas._gate import GatedServer
from cloister.cas._http import key_hash_of_pem
from cloister.cas._identity import SEALED_CERT, SEALED_KEY, CASIdentity, create_identity
from cloister.cas._keygen import KeyPool
from cloister.cas._limits import Limits
from cloister.cas._metrics import Metrics
from cloister.cas._nonces import NonceIssuer, nonce_key
from cloister.cas._processes import Siblings, check_seal, per_process
from cloister.cas._ratelimit import RateLimiter
from cloister.cas._rollback import NvCounterGuard
from cloister.cas._routes import Auth, Route, route_table
from cloister.cas._seal import SealConfig, ShamirUnsealer
from cloister.cas._sealed_store import SealedStore
from cloister.cas._sessions import SessionService
from cloister.cas._state import (
    open_sealed_store,
    prepare_state,
    require_current,
    unseal_automatic,
    unseal_shares,
)
from cloister.cas._tls import ClientCertAdapter
from cloister.policy import load_session

_log = logging.getLogger(__name__)

DEFAULT_LISTEN = ("0.0.0.0", 8081)  # noqa: S104 — a CAS serves the network by design


@dataclass(frozen=True)
class ServerConfig:
    state: Path
    #: ``sqlite`` (default: ``STATE/cas.db``), ``sqlite:///ABS/PATH`` or
    #: ``postgresql://…`` shared by replicas (see :mod:`cloister.cas._stores`)
    store_url: str = "sqlite"
    listen: tuple[str, int] = DEFAULT_LISTEN
    master_key_file: Path | None = None
    #: ``tpm`` seal: the TCTI, if it differs from the one given at ``cas init``
    tpm: str | None = None
    #: serve a state whose store head is behind the TPM counter: exactly this head value
    accept_rollback: int | None = None
    sans: tuple[str, ...] = ()
    #: every protective limit (deadlines, connection caps, rates, quotas, audit size)
    limits: Limits = field(default_factory=Limits)
    #: a file of identities (key hashes or PEM certificates) allowed to create
    #: top-level sessions; None: every identity may
    creators_file: Path | None = None
    #: where ``audit.log`` and its rotations live (default: the state directory)
    audit_dir: Path | None = None
    extra_routes: tuple[Route, ...] = field(default=())
    #: attestation collateral (certificates, TCB info, CRLs; ``trusted-roots/`` adds roots)
    #: read once at start and given to every verifier
    collateral: Path | None = None
    #: CAS processes serving ``listen`` together (``SO_REUSEPORT``; ``file`` seal only)
    processes: int = 1
    #: which of them this one is (0: the first, which starts the others)
    process_index: int = 0


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; no host: every address) → ``(host, port)``."""
    where = parse_host_port(value, default_port=None, what="listen address",
                            example="0.0.0.0:8081", empty_host="0.0.0.0", listen=True)  # noqa: S104
    return where.host, where.port


def default_engine(keys: KeyPool | None = None) -> SecretEngine:
    """The secret engine backed by :mod:`cloister.secrets` (RSA keys from ``keys``)."""
    from cloister.cas._engine_secrets import SecretsEngine  # noqa: PLC0415

    return SecretsEngine(keys.make_key) if keys is not None else SecretsEngine()


def open_store(config: ServerConfig, shares: Iterable[str] = ()) -> SealedStore:
    """The unsealed store of a stopped (or running) CAS: ``file`` and ``tpm`` seals unseal
    themselves, ``shamir`` needs ``shares``.  For tools and tests; close it after use."""
    prepare_state(config.state)
    seal = require_current(config.state)
    if seal.type == "shamir":
        key = unseal_shares(seal, list(shares))
    else:
        key = unseal_automatic(config.state, seal, key_file=config.master_key_file,
                               tpm=config.tpm)
    return open_sealed_store(config.state, seal, key, config.store_url)


def read_creators(path: Path) -> frozenset[str]:
    """Key hashes from a creators file: one 64-hex key hash per line and/or PEM
    certificates; ``#`` starts a comment.  :class:`errors.ConfigError` naming a bad line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.ConfigError(f"cannot read the creators file {path}: {exc}") from None
    hashes: set[str] = set()
    for pem in re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text,
                          flags=re.S):
        try:
            hashes.add(key_hash_of_pem(pem))
        except errors.PolicyError:
            raise errors.ConfigError(f"a certificate in {path} does not parse") from None
    rest = re.sub(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", "", text,
                  flags=re.S)
    for number, line in enumerate(rest.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if not re.fullmatch(r"[0-9a-fA-F]{64}", entry):
            raise errors.ConfigError(
                f"{path} line {number}: {entry[:80]!r} is neither a key hash nor a certificate",
                details=["write one SHA-256 key hash (64 hex digits) per line, or PEM "
                         "certificates; cloister prints an identity's key hash"],
            )
        hashes.add(entry.lower())
    if not hashes:
        raise errors.ConfigError(f"the creators file {path} names no identity")
    return frozenset(hashes)


def build_context(
    store: SealedStore, audit: AuditLog, engine: SecretEngine, identity: CASIdentity | None,
    *, limits: Limits | None = None, creators: frozenset[str] | None = None,
    nonce_key: bytes | None = None,
) -> AppContext:
    """The app's context.  ``nonce_key`` (derived from the master key) makes nonces valid
    at every CAS sharing the store; without it the app has a random key of its own."""
    limits = limits or Limits()
    metrics = Metrics()
    metrics.gauge("cloister_cas_sessions", "Number of session names.", store.session_count)
    stats = getattr(store.backend, "commit_stats", None)
    if stats is not None:  # SQLite: group commit (several writes per transaction and fsync)
        metrics.gauge("cloister_cas_store_commits", "Store write transactions committed, "
                      "since start.", lambda: stats()[0])
        metrics.gauge("cloister_cas_store_writes", "Store writes committed (several may share "
                      "a transaction), since start.", lambda: stats()[1])
    ctx = AppContext(
        store=store,
        sessions=SessionService(store, engine, audit, limits=limits, creators=creators),
        audit=audit, metrics=metrics, identity=identity, max_body=limits.max_body,
        rates={
            "nonce": RateLimiter(limits.nonce_rate, limits.nonce_burst,
                                 size=limits.rate_table_size),
            "attest": RateLimiter(limits.attest_rate, limits.attest_burst,
                                  size=limits.rate_table_size),
        },
    )
    if nonce_key is not None:
        ctx.extensions["attestation.nonces"] = NonceIssuer(
            nonce_key, store, lifetime=limits.nonce_lifetime)
    return ctx


def open_audit(path: Path, limits: Limits, *, shared: bool = False) -> AuditLog:
    return AuditLog(
        path, max_bytes=limits.audit_max_bytes, keep=limits.audit_keep,
        field_max=limits.audit_field_max, anonymous_per_minute=limits.audit_anonymous_per_minute,
        backlog=limits.audit_backlog, shared=shared,
    )


class _Switch:
    """The WSGI app of the server: the sealed app until unsealed, then the CAS app."""

    def __init__(self, app: CASApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        return self.app(environ, start_response)


class CASServer:
    """A configured CAS: call :meth:`serve_forever` (blocks) or :meth:`start`/:meth:`stop`."""

    def __init__(self, config: ServerConfig, engine: SecretEngine | None = None) -> None:
        self.config = config
        #: this process's share of the limits (all of them with one process)
        self.limits = limits = per_process(config.limits, config.processes)
        self._creators = read_creators(config.creators_file) if config.creators_file else None
        prepare_state(config.state)
        self.seal: SealConfig = require_current(config.state)
        check_seal(self.seal.type, config.processes)
        self.audit = open_audit((config.audit_dir or config.state) / AUDIT_FILE, limits,
                                shared=config.processes > 1)
        self._siblings: Siblings | None = None
        self.keys = KeyPool(limits.keygen_processes, limits.keygen_budget,
                            limits.max_keygen_requests)
        self.engine = engine or default_engine(self.keys)
        self.store: SealedStore | None = None
        self.identity: CASIdentity | None = None
        self.context: AppContext | None = None
        self._guard: NvCounterGuard | None = None
        self._lock = threading.Lock()
        try:
            if self.seal.type == "shamir":
                app, cert, key_pem = self._sealed_app()
            else:
                key = unseal_automatic(config.state, self.seal, key_file=config.master_key_file,
                                       tpm=config.tpm)
                app, identity = self._open(key)
                cert, key_pem = str(identity.server_cert_path), identity.server_key_pem
        except BaseException:
            self.keys.close()
            raise
        self.app = _Switch(app)
        server = GatedServer(
            config.listen, self.app, limits, request_queue_size=128, server_name="cloister-cas",
            reuse_port=config.processes > 1,
        )
        self.tls = ClientCertAdapter(cert, key_pem)
        server.ssl_adapter = self.tls
        server.max_request_header_size = limits.max_header
        server.max_request_body_size = 0  # the app enforces max_body with a JSON 413
        self.http = server
        self._thread: threading.Thread | None = None
        context: AppContext | None = getattr(self, "context", None)  # None while sealed
        if context is not None:
            self._gauges(context.metrics)

    def _gauges(self, metrics: Metrics) -> None:
        server = self.http
        metrics.gauge("cloister_cas_connections", "Open client connections.",
                      lambda: server.open_connections)
        metrics.gauge("cloister_cas_connections_refused", "Connections closed at accept "
                      "(over a connection limit), since start.", lambda: server.refused)
        metrics.gauge("cloister_cas_header_timeouts", "Connections closed for not sending "
                      "their request head within header_deadline, since start.",
                      lambda: server.gate.timed_out)
        metrics.gauge("cloister_cas_keepalive_direct", "Kept-alive requests read by the "
                      "worker that had just answered on the connection (no hand-off), "
                      "since start.", lambda: server.gate.direct)
        metrics.gauge("cloister_cas_process_id", "The id of the CAS process that answered "
                      "(with --processes N, one of N).", os.getpid)

    @property
    def sealed(self) -> bool:
        return self.store is None

    def _sealed_app(self) -> tuple[CASApp, str, bytes]:
        """The app of a sealed CAS, and its sealed-mode certificate and key."""
        state = self.config.state
        check_private_file(state / SEALED_KEY)
        unsealer = ShamirUnsealer(self.seal)
        ctx = AppContext(
            store=cast(Any, None), sessions=cast(Any, None), audit=self.audit,
            metrics=Metrics(), identity=None, max_body=4096,
            extensions=_unseal.sealed_extensions(unsealer, self._unsealed),
        )
        fallback = Route("GET", "*", _unseal.sealed, Auth.PUBLIC)
        app = CASApp(ctx, _unseal.SEALED_ROUTES, fallback=fallback)
        _log.info("CAS sealed (shamir, %s of %s shares needed): waiting for "
                  "`cloister cas unseal`", unsealer.threshold, self.seal.params["shares"])
        return app, str(state / SEALED_CERT), (state / SEALED_KEY).read_bytes()

    def _open(self, master_key: bytes) -> tuple[CASApp, CASIdentity]:
        """Steps after the master key is known: store, rollback guard, identity, app."""
        config = self.config
        store = open_sealed_store(config.state, self.seal, master_key, config.store_url)
        try:
            if self.seal.type == "tpm":
                guard = NvCounterGuard(self.seal.params, config.tpm)
                guard.start(store, accept=config.accept_rollback)
                store = SealedStore(store.backend, store.keyring, on_commit=guard.notify)
                self._guard = guard
            identity = create_identity(store, config.state, config.sans)
        except BaseException:
            store.close()
            raise
        self.store, self.identity = store, identity
        self.context = build_context(
            store, self.audit, self.engine, identity, limits=self.limits,
            creators=self._creators, nonce_key=nonce_key(store.keyring),
        )
        self.context.extensions["keyring"] = store.keyring
        if config.collateral is not None:
            self.context.extensions[COLLATERAL_EXTENSION] = load_collateral(config.collateral)
        routes = route_table((*config.extra_routes, *_unseal.UNSEALED_ROUTES))
        return CASApp(self.context, routes), identity

    def _unsealed(self, master_key: bytes) -> None:
        """The K-th share arrived: open everything, then switch app and TLS identity."""
        with self._lock:
            if not self.sealed:
                return
            app, identity = self._open(master_key)
            assert self.context is not None
            self._gauges(self.context.metrics)
            self.tls.use_identity(str(identity.server_cert_path), identity.server_key_pem)
            self.app.app = app
            _log.info("CAS unsealed")

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
        if self.config.processes > 1 and self.config.process_index == 0:
            self._siblings = Siblings(self.config, port)
            self._siblings.start()

    def stop(self) -> None:
        if self._siblings is not None:
            self._siblings.stop()
        self.keys.close()  # first: requests generating keys end, so their workers do
        self.http.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._guard is not None:
            self._guard.stop()
        if self.store is not None:
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
                if self._siblings is not None:
                    self._siblings.check()
        finally:
            self.stop()


def check_state(config: ServerConfig, shares: Iterable[str] = ()) -> list[str]:
    """Integrity check of a (stopped or running) CAS state: store and every sealed blob."""
    store = open_store(config, shares)
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
