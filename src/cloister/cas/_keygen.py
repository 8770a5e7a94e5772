"""Key generation with bounds: a few killable processes, a time budget, fair turns.

RSA key generation costs 0.1-2 s of CPU per key; elliptic-curve keys cost
microseconds.  So elliptic-curve (and Ed25519) keys are made in the request's
own thread, and every RSA key is made by :class:`KeyPool`:

1. a request may use the pool only inside :func:`request_scope` (the CAS app
   opens one per request, knowing how to tell that the client hung up);
   without a scope nothing is bounded (library use, tests);
2. at most ``max_requests`` requests use the pool at once; one more gets 503
   with ``Retry-After``;
3. ``processes`` child processes (no core dumps) generate the keys; a
   waiting request gets the next free process when, of all waiting requests,
   it has used the pool the least; if none is free, the waiting request has
   not been served yet, and a running request has used more than
   ``PREEMPT_AFTER`` seconds, that key is abandoned (its process killed and
   replaced) and its request queues again — so a small session is never stuck
   behind large ones, and each request is preempted at most once per newcomer;
4. while it waits or its key is made, the request checks every
   ``POLL`` seconds that its client is still connected and its budget
   (``budget`` seconds from its first RSA key) is not spent; if either fails,
   the process making its key is killed (and later replaced) and the
   request fails: nothing of the session is stored.

Key bytes travel only over the pipe to the child; nothing is written to disk.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from cloister import errors
from cloister.secrets._keys import PrivateKey, generate_key

POLL = 0.1
#: pool seconds by which a running request must lead a waiting one to be preempted
PREEMPT_AFTER = 2.0

_WORKER = r"""
import os, resource, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import rsa
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    key = rsa.generate_private_key(public_exponent=65537, key_size=int(line))
    der = key.private_bytes(s.Encoding.DER, s.PrivateFormat.PKCS8, s.NoEncryption())
    out.write(len(der).to_bytes(4, "big") + der)
    out.flush()
"""


class ClientGone(errors.RequestError):
    """The client hung up while its request was being worked on; the work was dropped."""

    code = "client_disconnected"


@dataclass
class _Scope:
    disconnected: Callable[[], bool]
    deadline: float | None = None
    served: float = 0.0
    release: Callable[[], None] | None = None
    seq: int = 0
    preempted: bool = False
    #: monotonic start of the key being made for this request, if one is
    running_since: float | None = None

    def used(self, now: float) -> float:
        """Pool seconds used, the key in progress included."""
        return self.served + (now - self.running_since if self.running_since else 0.0)


class _Preempted(Exception):
    """Internal: a request's key was abandoned for a request that waited with less use."""


_scope: ContextVar[_Scope | None] = ContextVar("cloister_keygen_scope", default=None)


@contextlib.contextmanager
def request_scope(disconnected: Callable[[], bool] = lambda: False) -> Iterator[None]:
    """Run a request's key generation bounded and cancellable (module steps 1 and 4)."""
    scope = _Scope(disconnected)
    token = _scope.set(scope)
    try:
        yield
    finally:
        _scope.reset(token)
        if scope.release is not None:
            scope.release()


class _Child:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _WORKER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            close_fds=True,
        )

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    def generate(self, bits: int, check: Callable[[], None]) -> bytes:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{bits}\n".encode())
        self.proc.stdin.flush()
        fd = self.proc.stdout.fileno()
        data = b""
        want = 4
        while len(data) < want:
            check()
            ready, _, _ = select.select([fd], [], [], POLL)
            if not ready:
                continue
            chunk = os.read(fd, want - len(data))
            if not chunk:
                raise errors.Overloaded("the key generation process ended unexpectedly")
            data += chunk
            if want == 4 and len(data) == 4:
                want = 4 + int.from_bytes(data, "big")
        return data[4:]


class KeyPool:
    """RSA key generation for requests under limits (see the module's steps)."""

    def __init__(self, processes: int = 2, budget: float = 60.0, max_requests: int = 32) -> None:
        self.budget = budget
        self.max_requests = max_requests
        self._slots: list[_Child | None] = [None] * processes
        self._busy: dict[int, _Scope] = {}
        self._cond = threading.Condition()
        self._active = 0
        self._waiting: list[_Scope] = []
        self._seq = 0
        self._closed = False

    def make_key(self, key_type: str | None) -> PrivateKey:
        """The key maker handed to the secret engine: RSA through the pool, others inline."""
        scope = _scope.get()
        if key_type is None or not key_type.startswith("RSA-") or scope is None:
            return generate_key(key_type)
        self._admit(scope)
        while True:
            try:
                der = self._run(scope, int(key_type.removeprefix("RSA-")))
                break
            except _Preempted:
                scope.preempted = False
        key = serialization.load_der_private_key(der, password=None)
        return key  # type: ignore[return-value]  # an RSA key, by construction

    def _admit(self, scope: _Scope) -> None:
        """Step 2: count the request against ``max_requests`` (once), start its budget."""
        if scope.release is not None:
            return
        with self._cond:
            if self._active >= self.max_requests:
                raise errors.Overloaded(
                    f"{self.max_requests} requests are generating RSA keys already "
                    "(limit max_keygen_requests); retry shortly",
                    retry_after=5,
                )
            self._active += 1
            self._seq += 1
            scope.seq = self._seq
        scope.deadline = time.monotonic() + self.budget
        scope.release = self._release

    def _release(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def _check(self, scope: _Scope) -> None:
        """Step 4: raise if the client is gone or the budget is spent (or we stop)."""
        if self._closed:
            raise errors.Overloaded("the CAS is stopping; retry shortly", retry_after=5)
        if scope.preempted:
            raise _Preempted
        if scope.disconnected():
            raise ClientGone("the client disconnected; key generation was stopped")
        if scope.deadline is not None and time.monotonic() > scope.deadline:
            raise errors.Overloaded(
                f"generating this session's keys took longer than {self.budget:g} s "
                "(limit keygen_budget); nothing was stored",
                details=["use fewer or smaller RSA keys, or retry when the CAS is less busy"],
                retry_after=self.budget,
            )

    def _take_slot(self, scope: _Scope) -> tuple[int, _Child]:
        """Step 3: wait for a free process, least-served request first."""
        with self._cond:
            self._waiting.append(scope)
            try:
                while True:
                    free = [i for i in range(len(self._slots)) if i not in self._busy]
                    first = min(self._waiting, key=lambda s: (s.served, s.seq)) is scope
                    if free and first:
                        slot = free[0]
                        self._busy[slot] = scope
                        child = self._slots[slot]
                        break
                    if first and not free and scope.served == 0:
                        now = time.monotonic()
                        victim = max(self._busy.values(), key=lambda s: s.used(now))
                        if victim.used(now) - scope.served > PREEMPT_AFTER:
                            victim.preempted = True
                    self._cond.wait(POLL)
                    self._check(scope)
            finally:
                self._waiting.remove(scope)
        return slot, child or _Child()

    def _run(self, scope: _Scope, bits: int) -> bytes:
        self._check(scope)
        slot, child = self._take_slot(scope)
        started = scope.running_since = time.monotonic()
        ok = False
        try:
            der = child.generate(bits, lambda: self._check(scope))
            ok = True
            return der
        finally:
            scope.served += time.monotonic() - started
            scope.running_since = None
            if not ok:
                child.kill()  # step 4: the key being made is abandoned with its process
            with self._cond:
                keep = ok and not self._closed
                # a killed process is replaced at once, so the next key need not wait
                # for an interpreter to start
                self._slots[slot] = child if keep else (None if self._closed else _Child())
                self._busy.pop(slot, None)
                self._cond.notify_all()
            if ok and not keep:
                child.kill()

    def close(self) -> None:
        """Stop: waiting requests fail, the key processes are killed."""
        with self._cond:
            self._closed = True
            idle = [c for i, c in enumerate(self._slots) if c is not None and i not in self._busy]
            self._slots = [None] * len(self._slots)
            self._cond.notify_all()
        for child in idle:
            child.kill()  # busy ones are killed by their request, which sees _closed


__all__ = ["ClientGone", "KeyPool", "request_scope"]
