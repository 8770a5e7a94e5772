"""Paired A/B of the CAS at one client: an older tree and a newer one, same run, same machine.

    git archive 8d58e3f | tar -x -C /tmp/old; git archive HEAD | tar -x -C /tmp/new
    .venv/bin/python bench/paired_ab.py /tmp/old /tmp/new 12 16 3 [sessions,attest,healthz]

Each tree runs in its own process with its own code on PYTHONPATH: it starts its own CAS
(and LAS) with its own bench helpers and, per command, creates SESSIONS sessions one at a
time (its CAS client, a new TLS connection each), attests for ATTEST_SECONDS (a tree
without ``bench.attest.attest_at_cas`` — 8d58e3f's — through its LAS with
``fetch_config``; a newer one with evidence signed by the LAS's key), or sends 100
``GET /healthz`` on new connections.  Rounds alternate old/new (ABBA), so the load of a
shared machine falls on both; printed: each side's median rate and p50, the median of the
per-round ratios new/old with their range, and the CAS's own CPU time per request
(``/proc``), which varies less than rates under load.  Every process it starts is stopped.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HEALTHZ = 100


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _platform(procs: Any, work: Path) -> tuple[Any, Callable[[], object]]:
    """This tree's CAS + LAS and its way to attest once."""
    import bench.attest  # noqa: PLC0415 - this tree's, from PYTHONPATH
    from bench._procs import Platform, measure  # noqa: PLC0415

    if not hasattr(bench.attest, "attest_at_cas"):  # 8d58e3f: through the LAS
        from cloister.runtime._attest import fetch_config  # noqa: PLC0415

        plat = Platform(work / "p", procs)
        plat.start()
        measurement = measure()
        plat.client().create_session(bench.attest.SESSION.format(
            name="ba", measurement=measurement))
        settings = bench.attest.settings_for(plat, "ba/app")
        return plat, lambda: fetch_config(settings, measurement, None)

    class _Ctx:
        def __init__(self) -> None:
            self.procs = procs

        def dir(self, name: str) -> Path:
            path = work / name
            path.mkdir(parents=True, exist_ok=True)
            return path

    plat, config_id = bench.attest.start_platform(_Ctx(), "p")
    return plat, lambda: bench.attest.attest_at_cas(plat, config_id)


def _healthz(plat: Any) -> None:
    ctx = ssl.create_default_context(cafile=str(plat.cas_cert))
    ctx.check_hostname = False
    conn = http.client.HTTPSConnection("127.0.0.1", plat.cas_port, context=ctx)
    conn.request("GET", "/healthz")
    conn.getresponse().read()
    conn.close()


def worker() -> None:
    """One tree's side: commands on stdin, one JSON line of results each on stdout."""
    from bench._procs import Processes  # noqa: PLC0415
    from bench.cas import SESSION  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="cloister-ab-"))
    procs = Processes(work / "logs")
    try:
        plat, attest = _platform(procs, work)
        client = plat.client()
        for _ in range(5):
            attest()
        cas_pid = procs.procs[0].pid
        serial = 0
        print("ready", flush=True)
        for line in sys.stdin:
            what, arg = line.split()
            before, latencies = _cpu(cas_pid), []
            started = time.perf_counter()
            while True:
                if what == "attest" and time.perf_counter() - started >= float(arg):
                    break
                if what != "attest" and len(latencies) >= int(arg):
                    break
                t0 = time.perf_counter()
                if what == "sessions":
                    serial += 1
                    client.create_session(SESSION.format(name=f"ab-{serial}"))
                elif what == "attest":
                    attest()
                else:
                    _healthz(plat)
                latencies.append(time.perf_counter() - t0)
            print(json.dumps({
                "rate": len(latencies) / (time.perf_counter() - started),
                "p50": statistics.median(latencies) * 1e3,
                "cpu_ms": (_cpu(cas_pid) - before) * 1e3 / max(1, len(latencies)),
            }), flush=True)
    finally:
        procs.stop_all()


def _start(tree: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=f"{tree}/src:{tree}")
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "worker"], cwd=tree,
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the side of {tree} did not start")
    return proc


def _ask(proc: subprocess.Popen[str], what: str, arg: str) -> dict[str, float]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{what} {arg}\n")
    proc.stdin.flush()
    answer: dict[str, float] = json.loads(proc.stdout.readline())
    return answer


def main(argv: list[str]) -> int:
    old_tree, new_tree = argv[0], argv[1]
    rounds, batch, seconds = int(argv[2]), argv[3], argv[4]
    wanted = (argv[5] if len(argv) > 5 else "sessions,attest").split(",")
    args = {"sessions": batch, "attest": seconds, "healthz": str(HEALTHZ)}
    sides = {"old": _start(old_tree)}
    try:
        sides["new"] = _start(new_tree)
        got: dict[str, dict[str, list[dict[str, float]]]] = {
            side: {what: [] for what in wanted} for side in sides}
        for r in range(rounds):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            for what in wanted:
                for side in order:
                    got[side][what].append(_ask(sides[side], what, args[what]))
            print(f"round {r + 1}: load {os.getloadavg()[0]:.1f}; " + "; ".join(
                f"{what} old {got['old'][what][-1]['rate']:.1f}/s new "
                f"{got['new'][what][-1]['rate']:.1f}/s" for what in wanted), flush=True)
    finally:
        for proc in sides.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=60)
    for what in wanted:
        old, new = got["old"][what], got["new"][what]
        ratios = [n["rate"] / o["rate"] for o, n in zip(old, new, strict=True)]

        def med(rows: list[dict[str, float]], key: str) -> float:
            return statistics.median(row[key] for row in rows)

        print(f"{what}: old {med(old, 'rate'):.1f}/s (p50 {med(old, 'p50'):.1f} ms, CAS CPU "
              f"{med(old, 'cpu_ms'):.2f} ms), new {med(new, 'rate'):.1f}/s (p50 "
              f"{med(new, 'p50'):.1f} ms, CAS CPU {med(new, 'cpu_ms'):.2f} ms); paired ratio "
              f"new/old {statistics.median(ratios):.3f} [{min(ratios):.2f}-{max(ratios):.2f}]")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker()
    else:
        sys.exit(main(sys.argv[1:]))
