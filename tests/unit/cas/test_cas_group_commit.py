"""Group commit (cloister.cas._group_commit): batched, isolated, answered only once committed."""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloister.cas._group_commit import GroupCommit
from cloister.errors import StoreUnavailable


@pytest.fixture
def db_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "g.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
        db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        db.execute("CREATE TABLE child (p INTEGER REFERENCES parent (id) "
                   "DEFERRABLE INITIALLY DEFERRED)")
    yield path


def _group(path: Path) -> tuple[GroupCommit, list[sqlite3.Connection]]:
    local = threading.local()
    opened: list[sqlite3.Connection] = []

    def connect() -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA foreign_keys=ON")
            local.conn = conn
            opened.append(conn)
        return conn

    return GroupCommit(connect), opened


def _rows(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT k, v FROM t").fetchall())


def _insert(key: str, value: int) -> Callable[[sqlite3.Connection], int]:
    return lambda db: db.execute("INSERT INTO t VALUES (?, ?)", (key, value)).rowcount


def test_units_queued_while_one_commits_share_a_commit(db_path: Path) -> None:
    group, _ = _group(db_path)
    holding, release = threading.Event(), threading.Event()

    def slow(db: sqlite3.Connection) -> int:
        holding.set()
        assert release.wait(10)
        return _insert("first", 0)(db)

    results: dict[str, int] = {}
    first = threading.Thread(target=lambda: results.setdefault("first", group.run(slow)))
    first.start()
    assert holding.wait(10)
    others = [threading.Thread(target=lambda i=i: results.setdefault(
        f"k{i}", group.run(_insert(f"k{i}", i)))) for i in range(15)]
    for thread in others:
        thread.start()
    while len(group._queue) < 15:  # all queued behind the leader's batch
        threading.Event().wait(0.01)
    release.set()
    for thread in (first, *others):
        thread.join(10)
    assert results == {"first": 1, **{f"k{i}": 1 for i in range(15)}}
    assert _rows(db_path) == {"first": 0, **{f"k{i}": i for i in range(15)}}
    assert group.units == 16
    assert group.batches == 2, "the 15 units queued during the first commit were not batched"


def test_a_failing_unit_is_rolled_back_alone(db_path: Path) -> None:
    group, _ = _group(db_path)
    group.run(_insert("taken", 1))
    holding, release = threading.Event(), threading.Event()

    def hold(db: sqlite3.Connection) -> None:
        holding.set()
        assert release.wait(10)

    outcomes: dict[str, object] = {}

    def run(name: str, work: Callable[[sqlite3.Connection], object]) -> None:
        try:
            outcomes[name] = group.run(work)
        except sqlite3.IntegrityError as exc:
            outcomes[name] = exc

    leader = threading.Thread(target=run, args=("hold", hold))
    leader.start()
    assert holding.wait(10)
    batch = [threading.Thread(target=run, args=(name, work)) for name, work in (
        ("a", _insert("a", 1)), ("dup", lambda db: (_insert("b", 2)(db), _insert("taken", 9)(db))),
        ("c", _insert("c", 3)))]
    for thread in batch:
        thread.start()
    while len(group._queue) < 3:
        threading.Event().wait(0.01)
    release.set()
    for thread in (leader, *batch):
        thread.join(10)
    assert isinstance(outcomes["dup"], sqlite3.IntegrityError)
    assert outcomes["a"] == 1 and outcomes["c"] == 1
    # the failing unit's first insert ("b") was undone with it; its batch-mates are kept
    assert _rows(db_path) == {"taken": 1, "a": 1, "c": 3}


def test_a_failed_commit_fails_every_unit_of_the_batch_and_writes_none(db_path: Path) -> None:
    group, _ = _group(db_path)
    holding, release = threading.Event(), threading.Event()

    def hold(db: sqlite3.Connection) -> None:
        holding.set()
        assert release.wait(10)

    errors: dict[str, BaseException | None] = {}

    def run(name: str, work: Callable[[sqlite3.Connection], object]) -> None:
        try:
            group.run(work)
            errors[name] = None
        except sqlite3.Error as exc:
            errors[name] = exc

    leader = threading.Thread(target=run, args=("hold", hold))
    leader.start()
    assert holding.wait(10)
    # a deferred foreign key fails only at COMMIT, after both units ran
    batch = [threading.Thread(target=run, args=("ok", _insert("ok", 1))),
             threading.Thread(target=run, args=("orphan", lambda db: db.execute(
                 "INSERT INTO child VALUES (42)")))]
    for thread in batch:
        thread.start()
    while len(group._queue) < 2:
        threading.Event().wait(0.01)
    release.set()
    for thread in (leader, *batch):
        thread.join(10)
    assert errors["hold"] is None
    assert isinstance(errors["ok"], sqlite3.IntegrityError), \
        "a unit was acknowledged although its commit failed"
    assert isinstance(errors["orphan"], sqlite3.IntegrityError)
    assert _rows(db_path) == {}


def test_an_answered_unit_is_visible_to_a_new_connection(db_path: Path) -> None:
    group, _ = _group(db_path)
    for i in range(5):
        assert group.run(_insert(f"k{i}", i), durable=i % 2 == 0) == 1
        assert _rows(db_path)[f"k{i}"] == i
    assert group.batches == 5  # one client alone waits for nobody


def _refuse_exclusive_locks(monkeypatch: pytest.MonkeyPatch) -> Callable[[int, int], None]:
    """``flock(LOCK_EX)`` fails with ENOLCK from now on; returns the real ``flock``."""
    real_flock = fcntl.flock

    def refuse(fd: int, op: int) -> None:
        if op == fcntl.LOCK_EX:
            raise OSError(errno.ENOLCK, "No locks available")
        real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", refuse)
    return real_flock


def test_a_writer_lock_that_cannot_be_taken_fails_the_units_and_writes_none(
        db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = threading.local()

    def connect() -> sqlite3.Connection:
        if getattr(local, "conn", None) is None:
            local.conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        return local.conn  # type: ignore[no-any-return]

    group = GroupCommit(connect, lock_file=str(db_path) + ".lock")
    real_flock = _refuse_exclusive_locks(monkeypatch)
    with pytest.raises(StoreUnavailable, match="writer lock cannot be taken: No locks"):
        group.run(_insert("never", 1))
    monkeypatch.setattr(fcntl, "flock", real_flock)
    assert _rows(db_path) == {}, "nothing ran, so nothing may be answered as written"
    assert group.run(_insert("later", 2)) == 1  # the lock works again: so does the store
    assert _rows(db_path) == {"later": 2}
    group.close()


def test_units_queued_behind_a_refused_writer_lock_are_not_answered_as_written(
        db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    group, _ = _group(db_path)
    group._lock_fd = os.open(str(db_path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    holding, release = threading.Event(), threading.Event()

    def hold(db: sqlite3.Connection) -> None:
        holding.set()
        assert release.wait(10)

    outcome: dict[str, object] = {}

    def run(name: str, work: Callable[[sqlite3.Connection], object]) -> None:
        try:
            outcome[name] = group.run(work)
        except StoreUnavailable as exc:
            outcome[name] = exc

    leader = threading.Thread(target=run, args=("hold", hold))
    leader.start()
    assert holding.wait(10)
    queued = [threading.Thread(target=run, args=(k, _insert(k, 1))) for k in ("a", "b")]
    for thread in queued:
        thread.start()
    while len(group._queue) < 2:
        threading.Event().wait(0.01)
    _refuse_exclusive_locks(monkeypatch)  # the next batch's lock is refused
    release.set()
    for thread in (leader, *queued):
        thread.join(10)
    assert outcome["hold"] is None
    assert isinstance(outcome["a"], StoreUnavailable), outcome
    assert isinstance(outcome["b"], StoreUnavailable), "answered as written, never run"
    assert _rows(db_path) == {}
    group.close()
