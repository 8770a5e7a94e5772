"""Slowloris against the CAS: twice as many trickling connections as it has workers, from
other addresses, must leave /healthz and a whole ``cloister run`` working.

Bounds (generous, for a loaded 2-core machine): each legitimate request within 5 s;
a trickling connection is cut within ``header_deadline`` (10 s) + 4 s.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from abuse_harness import Slowloris, tls_context, tls_socket
from fault_harness import tmpfs  # noqa: F401  (puts tests/integration on sys.path)

from run_harness import Platform, platform, python_measurement  # isort: skip

from cloister.cas import Limits

pytestmark = pytest.mark.slow

WORKERS = Limits().workers
HEADER_DEADLINE = Limits().header_deadline
PER_ADDRESS = Limits().max_connections_per_address

PROGRAM = "print('started under attack')\n"

SESSION = """\
name: calm
version: "0.3"
services:
  - name: app
    image_name: img
    mrenclaves: [{measurement}]
    command: python3 {program}
images:
  - name: img
    injection_files:
      - path: /tls/app.key
        content: $$SCONE::key$$
secrets:
  - name: key
    kind: private-key
security:
  attestation:
    tolerate: [debug-mode]
"""


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with platform(tmp_path_factory.mktemp("slowloris")) as p:
        yield p


def _timed(what: str, call: object, bound: float = 5.0) -> float:
    started = time.monotonic()
    ok = call()  # type: ignore[operator]
    took = time.monotonic() - started
    assert ok, f"{what} failed under attack"
    assert took < bound, f"{what} took {took:.1f} s under attack (bound {bound} s)"
    return took


def test_slowloris_with_twice_the_workers_leaves_healthz_and_run_working(
    plat: Platform, tmp_path: Path
) -> None:
    program = tmp_path / "app.py"
    program.write_text(PROGRAM)
    plat.create(SESSION.format(measurement=python_measurement(), program=program))
    ctx = tls_context(plat.cas.state / "cas-ca.pem")
    sources = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
    per_source = 2 * WORKERS // len(sources)
    assert per_source <= PER_ADDRESS  # the connection cap is not what saves the CAS here
    with Slowloris(plat.cas.port, ctx, sources, per_source) as attack:
        time.sleep(3)  # every attacking connection is open and trickling
        assert attack.handshakes >= 2 * WORKERS, attack.handshakes
        took = [_timed("/healthz", lambda: plat.cas.curl("/healthz").status == 200)
                for _ in range(3)]

        def run() -> bool:
            done = plat.run("calm/app", timeout=30)
            return done.returncode == 0 and "started under attack" in done.stdout

        took.append(_timed("cloister run", run))
        time.sleep(HEADER_DEADLINE + 2)  # long enough for the deadline to cut them
        took.append(_timed("/healthz", lambda: plat.cas.curl("/healthz").status == 200))
    print(f"legitimate requests under slowloris took {', '.join(f'{t:.2f}' for t in took)} s")
    assert attack.lifetimes, "no trickling connection was ever cut"
    longest = max(attack.lifetimes)
    assert longest < HEADER_DEADLINE + 4, (
        f"a trickling connection lived {longest:.1f} s: the header deadline is not total")


def test_connections_per_address_are_capped(plat: Platform) -> None:
    ctx = tls_context(plat.cas.state / "cas-ca.pem")
    held, refused = [], 0
    try:
        for _ in range(PER_ADDRESS + 8):
            try:
                sock = tls_socket(plat.cas.port, ctx, "127.0.0.9")
                sock.send(b"GET /healthz HTTP/1.1\r\n")  # open, head not complete
                held.append(sock)
            except (OSError, ssl.SSLError):
                refused += 1
        # the ones over the cap were closed at accept: their handshake failed, or the
        # connection is dead at once
        dead = 0
        for sock in held[PER_ADDRESS:]:
            sock.settimeout(2)
            try:
                if sock.recv(1) == b"":
                    dead += 1
            except (OSError, ssl.SSLError):
                dead += 1
        assert refused + dead >= 8, f"{refused} refused + {dead} dropped of 8 over the cap"
        # another address is unaffected
        assert plat.cas.curl("/healthz").status == 200
    finally:
        for sock in held:
            sock.close()
