"""Keeping a singleton lease (``security.singleton_enclaves``) while the service runs.

The CAS released the configuration with a lease (an id and a lifetime) that
only this attested process knows.  The keeper renews it every third of the
lifetime and releases it when the service exits.  If the service dies the
renewals stop and the CAS gives the lease to the next instance once it
expires.  If the lease is lost (the CAS gave it away after renewals failed for
a whole lifetime), the service is stopped with SIGTERM: at most one instance
holds the configuration.

- Python services run in this process: a daemon thread keeps the lease, and
  dies with the process.
- Native services replace this process by ``exec``: a small helper process
  (``python -m cloister.runtime._lease``, detached, given the lease on a pipe,
  holding nothing of the configuration) watches the service's pid with a
  pidfd and renews for as long as it lives.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cloister import errors
from cloister.client._transport import post_json
from cloister.errors import Unreachable

_log = logging.getLogger(__name__)
LEASE_PATH = "/v1/attest/lease"
#: how long an exiting service waits for its lease release to reach the CAS
RELEASE_WAIT_SECONDS = 5.0


@dataclass(frozen=True, repr=False)
class Lease:
    """Where to renew (``host``, ``port``, the pinned CAS certificate) and what."""

    host: str
    port: int
    pin: str
    config_id: str
    lease_id: str = field(repr=False)
    ttl: float = 30.0

    def __repr__(self) -> str:
        return f"Lease({self.config_id}, {self.ttl:.0f}s)"

    def _post(self, **extra: object) -> None:
        body = {"config_id": self.config_id, "lease": self.lease_id, **extra}
        post_json(self.host, self.port, LEASE_PATH, body, self.pin)

    def to_json(self) -> str:
        return json.dumps({"host": self.host, "port": self.port, "pin": self.pin,
                           "config_id": self.config_id, "lease": self.lease_id,
                           "ttl": self.ttl})

    @classmethod
    def from_json(cls, text: str) -> Lease:
        raw = json.loads(text)
        return cls(str(raw["host"]), int(raw["port"]), str(raw["pin"]),
                   str(raw["config_id"]), str(raw["lease"]), float(raw["ttl"]))


def renew_until(lease: Lease, ended: Callable[[float], bool]) -> bool:
    """Renew every ttl/3 while ``ended(seconds)`` (waiting that long) returns False.

    Returns False when the lease was lost (the caller stops the service)."""
    interval = max(lease.ttl / 3, 0.2)
    expires = time.monotonic() + lease.ttl
    while not ended(interval):
        try:
            lease._post()
            expires = time.monotonic() + lease.ttl
        except Unreachable:
            if time.monotonic() >= expires:
                _log.error("singleton lease of %s expired while the CAS was unreachable",
                           lease.config_id)
                return False
        except errors.Error as err:
            _log.error("singleton lease of %s lost: %s", lease.config_id, err.message)
            return False
    return True


def release(lease: Lease) -> None:
    try:
        lease._post(release=True)
    except errors.Error as err:  # the lease expires by itself
        _log.warning("could not release the singleton lease of %s: %s", lease.config_id,
                     err.message)


def keep_in_thread(lease: Lease) -> Callable[[], None]:
    """Renew from a daemon thread of this (Python) service; returns the call that stops
    renewing and releases the lease (waiting briefly for the release to be sent)."""
    stop = threading.Event()

    def loop() -> None:
        if renew_until(lease, stop.wait):
            release(lease)
        else:
            os.kill(os.getpid(), signal.SIGTERM)

    keeper = threading.Thread(target=loop, name="cloister-singleton-lease", daemon=True)
    keeper.start()

    def stop_and_release() -> None:
        stop.set()
        keeper.join(timeout=RELEASE_WAIT_SECONDS)

    return stop_and_release


def keep_in_helper(lease: Lease) -> None:
    """Start the detached helper that keeps the lease of this process (about to exec)."""
    helper = subprocess.Popen(
        [sys.executable, "-m", "cloister.runtime._lease", str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=None,
        env={k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH")},
        close_fds=True,
        start_new_session=True,
    )
    assert helper.stdin is not None
    helper.stdin.write(lease.to_json().encode())
    helper.stdin.close()
    # the helper forks its keeper and exits at once: no zombie is left to the service
    if helper.wait(timeout=30) != 0:
        raise errors.LaunchError("cannot start the singleton lease keeper")


def _helper_main(pid: int) -> int:
    lease = Lease.from_json(sys.stdin.read())
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return 1
    if os.fork() != 0:
        return 0  # the keeper lives on, reparented away from the service

    def service_ended(seconds: float) -> bool:
        return bool(select.select([pidfd], [], [], seconds)[0])

    if renew_until(lease, service_ended):
        release(lease)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(_helper_main(int(sys.argv[1])))
