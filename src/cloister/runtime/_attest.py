"""The runtime's side of attestation: nonce → quote → evidence → sealed configuration.

1. ask the CAS for a fresh nonce;
2. create an ephemeral X25519 key (memory only) and ask the LAS to quote
   ``{measurement, fspf tag, SHA256(nonce ‖ public key)}``;
3. send the evidence with the configuration id; the CAS answers with the
   configuration sealed to the ephemeral key, or with every reason it refused.

Unreachable CAS or LAS: retried with exponential backoff for a bounded time.
A refusal is never retried.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cloister.attest import (
    LasClient,
    generate_ephemeral_key,
    open_sealed,
    public_key_bytes_of,
    report_data,
)
from cloister.attest._las_client import LasUnreachable
from cloister.client._transport import Unreachable, post_json
from cloister.runtime._config import LaunchConfig
from cloister.runtime._settings import DEFAULT_CAS_PORT, RunSettings, split_address

_log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Timings:
    """Seconds spent in each step (for the start-up breakdown)."""

    nonce: float
    quote: float
    decision: float


def _retrying(what: str, call: Callable[[], T], budget: float) -> T:
    deadline = time.monotonic() + budget
    delay = 0.2
    while True:
        try:
            return call()
        except (Unreachable, LasUnreachable) as err:
            if time.monotonic() + delay > deadline:
                raise type(err)(
                    f"{err.message} (gave up after {budget:.0f}s of retries; "
                    f"is the {what} running?)",
                    details=err.details,
                ) from None
            _log.warning("%s not reachable yet, retrying in %.1fs", what, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def fetch_config(
    settings: RunSettings, measurement: str, fspf_tag: str | None
) -> tuple[LaunchConfig, Timings]:
    host, port = split_address(settings.cas_addr, DEFAULT_CAS_PORT)
    pin = settings.cas_cert_pem
    budget = settings.retry_seconds

    started = time.perf_counter()
    answer = _retrying("CAS", lambda: post_json(host, port, "/v1/attest/nonce", {}, pin), budget)
    nonce = bytes.fromhex(answer["nonce"])
    got_nonce = time.perf_counter()

    key = generate_ephemeral_key()
    public_key = public_key_bytes_of(key)
    las = LasClient(settings.las_addr)
    evidence = _retrying(
        "LAS", lambda: las.quote(measurement, fspf_tag, report_data(nonce, public_key)), budget
    )
    quoted = time.perf_counter()

    request = {
        "config_id": settings.config_id,
        "nonce": nonce.hex(),
        "public_key": public_key.hex(),
        "evidence": base64.b64encode(evidence).decode("ascii"),
    }
    # not retried on refusal: the nonce is spent, and a refusal will not change
    answer = _retrying(
        "CAS", lambda: post_json(host, port, "/v1/attest/config", request, pin), budget
    )
    sealed = base64.b64decode(answer["sealed_config"])
    config = LaunchConfig.from_json(open_sealed(key, sealed))
    done = time.perf_counter()
    return config, Timings(got_nonce - started, quoted - got_nonce, done - quoted)
