"""Rollback detection: the store's authenticated head counter against a TPM NV counter.

Every store write advances the head counter in its own transaction (the
counter carries an HMAC under the master key, so it cannot be forged).  With
the ``tpm`` seal the TPM's NV counter — which only ever increases — follows
it: :class:`NvCounterGuard` increments it after each commit, in a background
thread, so a write never waits for the TPM.  At start:

1. head == NV: the state is the latest the TPM saw;
2. head > NV: writes committed whose NV increments were cut short (a crash);
   the NV counter is brought up to the head;
3. head < NV: the state is an **older copy** (a restored backup or snapshot):
   the CAS refuses to start, naming both values, unless the operator accepts
   exactly this copy with ``cloister cas serve --accept-rollback HEAD``; the
   head is then moved up to the NV value, so the next start is clean.

The window: writes acknowledged less than one NV increment ago (normally
milliseconds) are not yet covered.  ``shamir`` and ``file`` seals have no
monotonic counter; there rollback is not detected (the README says so).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from cloister import errors
from cloister.cas import _seal_tpm
from cloister.cas._sealed_store import SealedStore

_log = logging.getLogger(__name__)


def check_head(store: SealedStore, nv: int, *, accept: int | None) -> int:
    """Steps 1 to 3 above given the NV value; the counter the NV must be brought up to."""
    head = store.head_counter()
    if head >= nv:
        if accept is not None:
            _log.info("--accept-rollback %d ignored: the state is not behind its counter "
                      "(store head %d, TPM counter %d)", accept, head, nv)
        return head
    if accept != head:
        raise errors.RollbackDetected(
            f"refusing to serve: the CAS state is older than its TPM counter (store head "
            f"counter {head}, TPM NV counter {nv}): a restored copy or rolled-back disk, "
            f"missing {nv - head} write(s)",
            details=[
                "restore the latest state instead, or, to serve this copy on purpose "
                "(its later sessions are lost), start once with: "
                f"cloister cas serve --accept-rollback {head}",
            ],
        )
    _log.warning("accepting a rolled-back CAS state on purpose: store head %d, TPM counter %d",
                 head, nv)
    store.set_head(nv)
    return nv


class NvCounterGuard:
    """Keeps the TPM NV counter up with the store head (``on_commit`` of the store)."""

    def __init__(self, params: dict[str, Any], tcti: str | None = None) -> None:
        self.tcti = tcti or str(params["tcti"])
        self.index = int(params["nv_index"])
        self._target = 0
        self._value = _seal_tpm.read_counter(self.tcti, self.index)
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None

    @property
    def value(self) -> int:
        return self._value

    def start(self, store: SealedStore, *, accept: int | None) -> None:
        target = check_head(store, self._value, accept=accept)
        self._sync(target)
        self._thread = threading.Thread(target=self._run, name="nv-counter", daemon=True)
        self._thread.start()

    def _sync(self, target: int) -> None:
        if target > self._value:
            self._value = _seal_tpm.increment_counter(self.tcti, self.index,
                                                      target - self._value)

    def notify(self, counter: int) -> None:
        with self._cond:
            self._target = max(self._target, counter)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._target <= self._value and not self._stop:
                    self._cond.wait()
                if self._target <= self._value:
                    return
                target = self._target
            try:
                self._sync(target)
            except errors.Error as exc:  # the TPM went away: the next start catches up
                _log.error("cannot advance the TPM rollback counter: %s", exc)
                with self._cond:
                    self._cond.wait(1.0)

    def stop(self) -> None:
        """Bring the counter up to the last commit, then end the thread."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)
