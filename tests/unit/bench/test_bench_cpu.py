"""``bench._cpu``: a process tree's CPU seconds, read from /proc of real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root holds bench/

from bench._cpu import _stat, tree_cpu_seconds

# a child that burns 0.4 s of CPU, says so, then waits; and a parent that only waits for it
_CHILD = """
import time
end = time.process_time() + 0.4
while time.process_time() < end:
    pass
print("burnt", flush=True)
time.sleep(60)
"""
_PARENT = f"""
import subprocess, sys
subprocess.Popen([sys.executable, "-c", {_CHILD!r}]).wait()
"""


def test_the_cpu_of_a_descendant_is_counted_and_its_parents_own_is_small() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "burnt"
        own = _stat(parent.pid)
        assert own is not None and own[1] < 0.3, "the parent itself burnt nothing"
        assert tree_cpu_seconds(parent.pid) >= 0.35, "the child's 0.4 s must be counted"
    finally:
        os.killpg(parent.pid, signal.SIGKILL)  # the child too
        parent.wait()


def test_a_process_that_is_gone_counts_nothing() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert _stat(gone.pid) is None
    assert tree_cpu_seconds(gone.pid) == 0.0
