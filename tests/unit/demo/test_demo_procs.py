"""The demo's process table signals only the processes it started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cloister.demo._procs import ProcessTable, Record, start_time


def test_start_records_and_stop_ends_the_process(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path)
    record = table.start("sleeper", ["sleep", "300"], dict(os.environ), tmp_path / "s.log")
    assert record.alive()
    assert json.loads((tmp_path / "pids" / "sleeper.json").read_text())["pid"] == record.pid
    assert table.running("sleeper") == record
    assert table.stop(record) is True
    assert not record.alive()
    assert not (tmp_path / "pids" / "sleeper.json").exists()


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        started = start_time(bystander.pid)
        assert started is not None
        (tmp_path / "pids").mkdir()
        # a record naming the bystander's PID but another start time: a PID reused since
        stale = Record("api", bystander.pid, started - 1, "x.log")
        (tmp_path / "pids" / "api.json").write_text(json.dumps(stale.__dict__))
        assert ProcessTable(tmp_path).stop_all(["api"]) == []
        assert bystander.poll() is None, "down killed a process it did not start"
        assert not (tmp_path / "pids" / "api.json").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_start_time_survives_exec(tmp_path: Path) -> None:
    """``cloister run -- redis-server`` execs: the record must still match afterwards."""
    table = ProcessTable(tmp_path)
    code = "import os; os.execvp('sleep', ['sleep', '300'])"
    record = table.start("execer", [sys.executable, "-c", code], dict(os.environ),
                         tmp_path / "e.log")
    try:
        for _ in range(200):
            if Path(f"/proc/{record.pid}/cmdline").read_bytes().startswith(b"sleep"):
                break
            subprocess.run(["sleep", "0.02"], check=True)
        assert Path(f"/proc/{record.pid}/cmdline").read_bytes().startswith(b"sleep")
        assert record.alive()
    finally:
        assert table.stop(record) is True


def test_unreadable_records_are_dropped_not_signalled(tmp_path: Path) -> None:
    (tmp_path / "pids").mkdir()
    (tmp_path / "pids" / "junk.json").write_text("{not json")
    assert ProcessTable(tmp_path).records() == []
    assert not (tmp_path / "pids" / "junk.json").exists()


def test_stop_all_stops_in_the_given_order(tmp_path: Path) -> None:
    table = ProcessTable(tmp_path)
    for name in ("cas", "api", "redis"):
        table.start(name, ["sleep", "300"], dict(os.environ), tmp_path / f"{name}.log")
    assert table.stop_all(["api", "redis", "las", "cas"]) == ["api", "redis", "cas"]
    assert table.records() == []
