"""``cloister run`` when the LAS or the CAS is down: bounded retries with backoff, then one
clear line; a CAS that comes up within the retry window lets the run go through.

(The unreachable-CAS give-up is in integration/test_run_python.py.)
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import fault_harness  # noqa: F401  (puts tests/integration on sys.path)
import pytest

from cas_harness import CLOISTER, free_port  # isort: skip
from run_harness import Platform, platform, python_measurement  # isort: skip

PROGRAM = "import os\nprint('ran with', os.environ['GREETING'])\n"


def session(program: Path) -> str:
    return f"""\
name: retry
version: "0.3"
services:
  - name: app
    mrenclaves: [{python_measurement()}]
    command: python3 {program}
    environment:
      GREETING: hello
security:
  attestation:
    tolerate: [debug-mode]
"""


@pytest.fixture(scope="module")
def plat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("retry")
    with platform(root) as p:
        program = root / "app.py"
        program.write_text(PROGRAM)
        p.create(session(program))
        yield p


def _one_clear_line(stderr: str, *needles: str) -> None:
    assert "Traceback" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("cloister: ")]
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


def test_las_down_fails_clearly_after_bounded_retries(plat: Platform) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    done = plat.run("retry/app", CLOISTER_LAS_ADDR=nobody, CLOISTER_RETRY_SECONDS="2")
    assert done.returncode != 0
    assert "ran with" not in done.stdout
    _one_clear_line(done.stderr, nobody, "gave up after 2s")
    assert "LAS" in done.stderr
    assert done.stderr.count("retrying") >= 2, done.stderr  # it did back off and retry


def test_cas_that_comes_up_within_the_retry_window_lets_the_run_succeed(
    plat: Platform,
) -> None:
    assert "ran with hello" in plat.run("retry/app").stdout  # control
    plat.cas.stop()
    proc = subprocess.Popen([CLOISTER, "run"],
                            env=plat.env("retry/app", CLOISTER_RETRY_SECONDS="90"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # wait until it has tried (and failed) at least once: the CAS is really down
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "not reachable yet" in first or "retrying" in first, first
    finally:
        plat.cas.start()  # same port, same state
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "ran with hello" in out


def test_las_that_comes_up_within_the_retry_window_lets_the_run_succeed(
    plat: Platform,
) -> None:
    plat.las.stop()
    proc = subprocess.Popen([CLOISTER, "run"],
                            env=plat.env("retry/app", CLOISTER_RETRY_SECONDS="90"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "LAS" in first and ("not reachable yet" in first or "retrying" in first), first
    finally:
        plat.las.start()  # same port, same state (same quoting key)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "ran with hello" in out
