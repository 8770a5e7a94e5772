"""The peer section's arithmetic: cloister certificates vs cfssl's, and the request it sends.

No timing here: runs are made up, so only the bookkeeping is checked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root holds bench/

from bench._concurrency import Run, cfssl_request
from bench.peer_cfssl import side_by_side


def _run(rate: float, latencies_ms: list[float], failures: int = 0) -> Run:
    return Run(16, rate, [ms / 1e3 for ms in latencies_ms], ["HTTP 503"] * failures)


def test_ratio_counts_two_certificates_per_session_paired_by_round() -> None:
    cas = [_run(300.0, [10.0, 20.0]), _run(500.0, [30.0])]
    peer = [_run(1200.0, [1.0]), _run(1000.0, [2.0], failures=1)]
    sessions, cfssl, ratio = side_by_side(16, cas, peer)
    assert sessions.subject is not None and sessions.subject.median == 400.0
    assert "p50 20.0 ms" in sessions.note and "3 done, 0 failed" in sessions.note
    assert cfssl.subject is not None and cfssl.subject.median == 1100.0
    assert cfssl.extra["failed"] == 1
    # round 1: 600/1200 = 0.5; round 2: 1000/1000 = 1.0 (not 1600/2200 pooled)
    assert ratio.ratio is not None
    assert (ratio.ratio.lo, ratio.ratio.hi) == (0.5, 1.0)
    assert ratio.ratio.median == pytest.approx(0.75)
    assert ratio.holds is True
    assert "16 clients" in ratio.name


def test_ratio_below_half_of_cfssl_misses_the_target() -> None:
    (_, _, ratio) = side_by_side(1, [_run(270.0, [3.0])], [_run(1403.0, [0.7])])
    assert ratio.ratio is not None and ratio.ratio.median == pytest.approx(540 / 1403)
    assert ratio.holds is False
    assert ratio.name.endswith(", 1 client")


def test_without_cfssl_the_peer_lines_say_why_and_cloister_is_still_measured() -> None:
    figures = side_by_side(64, [_run(290.0, [200.0])], [], "cfssl not installed (apt-get …)")
    assert [f.status for f in figures] == ["ok", "skipped", "skipped"]
    assert all(f.note == "cfssl not installed (apt-get …)" for f in figures[1:])
    assert all(f.holds is None for f in figures[1:])


def test_cfssl_request_asks_for_a_new_p256_key_for_the_name() -> None:
    body = json.loads(cfssl_request("c-1.bench"))
    assert body == {"request": {"CN": "c-1.bench", "hosts": ["c-1.bench", "127.0.0.1"],
                                "key": {"algo": "ecdsa", "size": 256}}}


def _metered(rate: float, done: int, server_cpu: float, client_cpu: float = 0.5) -> Run:
    return Run(16, rate, [0.01] * done, [], server_cpu=server_cpu, client_cpu=client_cpu)


def test_server_cpu_per_certificate_is_paired_by_round_against_cfssl() -> None:
    # cloister: 2 s of CAS CPU over 500 sessions = 4 ms/session = 2 ms/certificate
    cas = [_metered(400.0, 500, 2.0), _metered(400.0, 500, 3.0)]
    peer = [_metered(1400.0, 1000, 0.5), _metered(1400.0, 1000, 0.5)]
    *_, cpu = side_by_side(16, cas, peer)
    assert cpu.unit == "ms" and "16 clients" in cpu.name
    assert cpu.subject is not None and (cpu.subject.lo, cpu.subject.hi) == (2.0, 3.0)
    assert cpu.baseline is not None and cpu.baseline.median == pytest.approx(0.5)
    assert cpu.ratio is not None and (cpu.ratio.lo, cpu.ratio.hi) == (4.0, 6.0)
    assert cpu.holds is None  # informative: the issue's targets are on the rates
    assert "sessions/s" in cpu.note


def test_sessions_at_sixteen_clients_carry_the_issues_rate_target() -> None:
    sixteen = side_by_side(16, [_metered(398.0, 10, 1.0)], [_metered(1487.0, 10, 0.1)])
    one = side_by_side(1, [_metered(233.0, 10, 1.0)], [_metered(1048.0, 10, 0.1)])
    assert sixteen[0].target is not None and sixteen[0].holds is False
    assert "CPU per request: server 100.00 ms, clients 50.00 ms" in sixteen[0].note
    assert one[0].target is None and one[0].holds is None
