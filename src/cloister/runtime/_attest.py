"""The runtime's side of attestation: nonce → quote → evidence → sealed configuration.

1. ask the CAS for a fresh nonce;
2. create an ephemeral X25519 key (memory only) and ask the LAS to quote this
   process with report data ``SHA256(nonce ‖ public key)``: the LAS measures
   the process itself (its interpreter, libpython, the cloister runtime
   here, the native program it will exec, the protection file), and signs
   that with the process's uid and gid;
3. send the evidence with the configuration id; the CAS answers with the
   configuration sealed to the ephemeral key, or with every reason it refused.

Unreachable CAS or LAS: retried with exponential backoff for a bounded time.
A refusal is never retried.
"""

from __future__ import annotations

import base64
import logging
import os
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cloister import errors
from cloister._address import parse_host_port
from cloister.attest import (
    LasClient,
    generate_ephemeral_key,
    open_sealed,
    public_key_bytes_of,
    report_data,
)
from cloister.attest._las_client import CALLER_NOT_MEASURABLE, LasRefused
from cloister.attest._measure import runtime_dir
from cloister.client._transport import post_json
from cloister.runtime._config import LaunchConfig
from cloister.runtime._isolation import dumpable_for_measurement
from cloister.runtime._settings import DEFAULT_CAS_PORT, RunSettings

_log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Timings:
    """Seconds spent in each step (for the start-up breakdown)."""

    nonce: float
    quote: float
    decision: float


#: what is worth another try: nobody answered, or the CAS is at a protective limit
RETRIED: tuple[type[errors.Error], ...] = (errors.Unreachable, errors.Overloaded)


#: errors raised because the budget ran out: an enclosing retry raises them as they are
_SPENT: weakref.WeakSet[errors.Error] = weakref.WeakSet()


def _retrying(what: str, call: Callable[[], T], budget: float, *,
              deadline: float | None = None,
              clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> T:
    """``call()``, retried with backoff while it fails with :data:`RETRIED`, for ``budget`` s.

    The last try is made at the deadline (the sleeps are cut to it), so the
    whole budget is used; the message says how long it really waited.
    Nested retries share one ``deadline`` (``clock()`` time; default: now
    plus ``budget``), so the steps of one attempt never add up to more than
    the budget, and the error of a spent budget is raised once, not retried.
    """
    deadline = clock() + budget if deadline is None else deadline
    started = deadline - budget
    delay = 0.2
    while True:
        try:
            return call()
        except RETRIED as err:
            if err in _SPENT:
                raise
            left = deadline - clock()
            if left <= 0:
                waited = clock() - started
                final = type(err)(
                    f"{err.message} (gave up after {waited:.0f}s of retries, "
                    f"CLOISTER_RETRY_SECONDS={budget:g}; is the {what} running?)",
                    details=err.details,
                )
                _SPENT.add(final)
                raise final from None
            pause = min(delay, left)
            _log.warning("%s not reachable yet (%s), retrying in %.1fs (%.0fs left of %gs)",
                         what, err.message, pause, left, budget)
            sleep(pause)
            delay = min(delay * 2, 5.0)


def _quote(las: LasClient, data: bytes, program: str | None, fspf_path: str | None,
           budget: float, *, deadline: float | None = None) -> bytes:
    def ask() -> bytes:
        answer = las.quote(data, runtime=str(runtime_dir()), program=program,
                           fspf_path=fspf_path)
        evidence: bytes = answer["evidence"]
        return evidence

    try:
        return _retrying("LAS", ask, budget, deadline=deadline)
    except LasRefused as err:
        if err.las_code != CALLER_NOT_MEASURABLE:
            raise
    with dumpable_for_measurement():  # a LAS of this user: let it read /proc/self
        return ask()


def fetch_config(
    settings: RunSettings, program: str | None
) -> tuple[LaunchConfig, Timings]:
    """Attest this process (which will exec ``program``, or run Python when None)."""
    where = parse_host_port(settings.cas_addr, default_port=DEFAULT_CAS_PORT,
                            what="CAS address", example="CLOISTER_CAS_ADDR=cas:8081")
    host, port = where.host, where.port
    pin = settings.cas_cert_pem
    budget = settings.retry_seconds
    fspf_path = os.path.abspath(settings.fspf_path) if settings.fspf_path else None
    deadline = time.monotonic() + budget  # one budget for every step and every attempt

    def attempt() -> tuple[Any, Any, float, float, float]:
        # a whole attempt is retried, so a retry never re-sends a spent nonce
        started = time.perf_counter()
        answer = _retrying("CAS", lambda: post_json(host, port, "/v1/attest/nonce", {}, pin),
                           budget, deadline=deadline)
        nonce = bytes.fromhex(answer["nonce"])
        got_nonce = time.perf_counter()
        key = generate_ephemeral_key()
        public_key = public_key_bytes_of(key)
        las = LasClient(settings.las_addr)
        evidence = _quote(las, report_data(nonce, public_key), program, fspf_path, budget,
                          deadline=deadline)
        quoted = time.perf_counter()
        request = {
            "config_id": settings.config_id,
            "nonce": nonce.hex(),
            "public_key": public_key.hex(),
            "evidence": base64.b64encode(evidence).decode("ascii"),
        }
        if settings.service_access_token is not None:
            request["service_access_token"] = settings.service_access_token
        # not retried on refusal: the nonce is spent, and a refusal will not change
        answer = post_json(host, port, "/v1/attest/config", request, pin)
        return answer, key, started, got_nonce, quoted

    answer, key, started, got_nonce, quoted = _retrying("CAS", attempt, budget,
                                                        deadline=deadline)
    sealed = base64.b64decode(answer["sealed_config"])
    config = LaunchConfig.from_json(open_sealed(key, sealed))
    done = time.perf_counter()
    return config, Timings(got_nonce - started, quoted - got_nonce, done - quoted)
