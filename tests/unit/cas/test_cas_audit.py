"""The audit log: capped fields, summarised anonymous refusals, rotation, a full disk."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from cloister import errors
from cloister.cas import AuditLog


def _entries(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_fields_are_capped_and_their_length_noted(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", field_max=16)
    log.record(caller="c" * 64, action="attest", session="s" * 1000, decision="deny",
               reason="r" * 1000, config_id="x" * 10_000)
    log.close()
    (entry,) = _entries(tmp_path / "audit.log")
    assert entry["config_id"].startswith("x" * 16) and "10000 characters" in entry["config_id"]
    assert len(entry["session"]) < 64 and len(entry["reason"]) < 100
    assert (tmp_path / "audit.log").stat().st_size < 600


def test_anonymous_refusals_past_the_budget_become_one_summary(tmp_path: Path) -> None:
    now = [1000.0]
    log = AuditLog(tmp_path / "audit.log", anonymous_per_minute=5, clock=lambda: now[0])
    for i in range(500):
        log.record(caller=None, action="attest", session=f"s{i}", decision="deny", reason="x")
    log.record(caller="k", action="read", session="s", decision="deny")  # not anonymous
    now[0] += 61
    log.record(caller=None, action="attest", session="next", decision="deny")
    log.close()
    entries = _entries(tmp_path / "audit.log")
    summaries = [e for e in entries if e["action"] == "summary"]
    assert len(entries) == 5 + 1 + 1 + 1, [e["action"] for e in entries]
    assert summaries[0]["suppressed"] == 495 and "attest: 495" in summaries[0]["actions"]


def test_rotation_keeps_the_newest_files_within_the_retention(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", max_bytes=1000, keep=2)
    for i in range(100):
        log.record(caller="k", action="read", session=f"s{i:03}", decision="allow")
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["audit.log", "audit.log.1", "audit.log.2"]
    assert all((tmp_path / n).stat().st_size <= 1000 for n in names)
    assert _entries(tmp_path / "audit.log")[-1]["session"] == "s099"


def test_a_full_disk_holds_entries_refuses_durable_ones_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(tmp_path / "audit.log")
    real_write = os.write
    full = [True]

    def write(fd: int, data: bytes) -> int:
        if full[0] and fd == log._fd:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    log.record(caller="k", action="read", session="held", decision="allow")
    with pytest.raises(errors.StoreFull, match="audit log is full"):
        log.record(caller=None, action="attest", session="s", decision="allow", durable=True)
    with pytest.raises(errors.StoreFull):
        log.require_writable()
    full[0] = False
    log.require_writable()
    log.record(caller="k", action="create", session="after", decision="allow")
    log.close()
    assert [e["session"] for e in _entries(tmp_path / "audit.log")] == ["held", "after"]


def test_processes_sharing_a_log_rotate_it_once_and_lose_no_entry(tmp_path: Path) -> None:
    # two CAS processes (cloister cas serve --processes 2) append to one audit.log
    path = tmp_path / "audit.log"
    one = AuditLog(path, max_bytes=2000, keep=50, shared=True)
    two = AuditLog(path, max_bytes=2000, keep=50, shared=True)
    for i in range(120):
        (one if i % 3 else two).record(caller="c" * 64, action="read", session=f"s{i}",
                                       decision="allow")
    one.close()
    two.close()
    rotated = [p for p in tmp_path.glob("audit.log.*") if p.suffix[1:].isdigit()]
    files = [*sorted(rotated, key=lambda p: -int(p.suffix[1:])), path]  # oldest first
    sessions = [json.loads(line)["session"] for f in files
                for line in f.read_text().splitlines()]
    assert sessions == [f"s{i}" for i in range(120)], "entries lost or out of order"
    assert all(f.stat().st_size <= 2000 for f in files), "a file grew past max_bytes"
    # each rotation moved a full file: no process rotated a file another had just begun
    assert len(files) > 3 and all(f.stat().st_size > 2000 - 400 for f in files[:-1])


def test_free_space_is_read_at_every_check_when_low_and_once_a_second_when_plenty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills is noticed at the next check below 64 MiB free, within a second
    above; a write that fails forgets the last reading."""
    log = AuditLog(tmp_path / "audit.log")
    free = [1 << 40]
    reads = [0]
    real_statvfs, real_write = os.fstatvfs, os.write
    clock = [100.0]

    def statvfs(fd: int) -> os.statvfs_result:
        reads[0] += 1
        st = real_statvfs(fd)
        blocks = free[0] // st.f_frsize
        fields = list(st)
        fields[3] = fields[4] = blocks  # f_bfree, f_bavail
        return os.statvfs_result(fields)

    def write(fd: int, data: bytes) -> int:
        if free[0] == 0 and fd == log._fd:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "fstatvfs", statvfs)
    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr("cloister.cas._audit.time.monotonic", lambda: clock[0])
    for _ in range(100):
        log.require_writable()
    assert reads[0] == 1  # plenty: one reading serves the next second
    free[0] = 1 << 20  # 1 MiB: little room; each check reads again
    clock[0] += 1.0
    log.require_writable()
    log.require_writable()
    assert reads[0] == 3
    free[0] = 16 * 1024  # under the 64 KiB headroom: refused at the next check
    with pytest.raises(errors.StoreFull):
        log.require_writable()
    free[0] = 1 << 40
    log.require_writable()  # space back: accepted again
    free[0] = 0  # a sudden full disk within the second: the failed write is noticed
    log.record(caller="k", action="create", session="held", decision="allow")
    with pytest.raises(errors.StoreFull):
        log.require_writable()
    assert log._plenty_until == 0.0  # the next checks read the free space again
    free[0] = 1 << 40
    log.require_writable()
    log.close()
    assert [e["session"] for e in _entries(tmp_path / "audit.log")] == ["held"]
