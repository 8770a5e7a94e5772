"""Group commit for the SQLite store: the writes of many threads in one transaction, one fsync.

Every write of :class:`cloister.cas._sqlite.SqliteStore` is a *unit*: a
function of the connection that reads and writes inside a transaction.
:meth:`GroupCommit.run` queues the unit and waits until it is committed:

1. the first waiting thread becomes the *leader*; the others wait, each on
   its own unit's lock (not in SQLite's busy handler, which sleeps in steps of
   up to 100 ms and lets the lock go idle; and not on one shared condition, so
   a commit wakes only the threads it answers);
2. the leader takes up to ``max_batch`` queued units, takes the store's
   writer lock file (``flock``: CAS processes sharing the file queue in the
   kernel, not in SQLite's busy handler), opens one ``BEGIN IMMEDIATE``
   transaction and runs each unit in its own ``SAVEPOINT``; a
   unit that raises is rolled back to its savepoint alone and gets its
   exception, the others are unaffected.  Units run one after the other, so
   each sees the units before it as committed — the outcome is that of
   running them serially (two updates of one name: the second sees the
   first's hash and gets :class:`cloister.errors.Conflict`);
3. one ``COMMIT``: with ``synchronous=FULL`` (fsync of the WAL) if any unit
   in the batch is *durable*, else ``NORMAL`` (spent nonces: they survive a
   crash of the process, not of the machine; a later durable commit fsyncs
   them too);
4. only then is every unit of the batch answered — its result, or its own
   exception, or the commit's exception for all of them (nothing of the batch
   was written).  So a caller is acknowledged only after its write is on disk.
   When the leader's own unit is answered, the thread of the oldest waiting
   unit leads next.

While the leader commits, new units queue; the next leader takes them all, so
the number of fsyncs per second stays about the same while the writes per
fsync grow with the load.  One client alone waits for nobody.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cloister import errors

_T = TypeVar("_T")
_log = logging.getLogger(__name__)

#: units committed together at most
MAX_BATCH = 64


def _held() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass
class _Unit(Generic[_T]):
    work: Callable[[sqlite3.Connection], _T]
    durable: bool
    finished: bool = False
    result: Any = None
    error: BaseException | None = None
    #: released (once) when the unit is finished or its thread is to lead: its thread
    #: waits on this lock alone, so a batch wakes only the threads it answers
    wake: threading.Lock = field(default_factory=_held)

    def outcome(self) -> _T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[no-any-return]


class GroupCommit:
    """Runs units of work (module steps) on ``connect()``'s connection of the leader thread."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], *,
                 max_batch: int = MAX_BATCH, lock_file: str | None = None) -> None:
        self._connect = connect
        self._max_batch = max_batch
        #: the synchronous setting each connection has (by id), so it is set only on a change
        self._sync: dict[int, str] = {}
        #: the writer lock shared with other processes (-1: this process only).  It only
        #: orders the writers; SQLite's own locking keeps them correct without it, so a
        #: lock file that cannot be made (a read-only copy of the state) is done without
        self._lock_fd = -1
        if lock_file is not None:
            with contextlib.suppress(OSError):
                self._lock_fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._queue: list[_Unit[Any]] = []
        self._leading = False
        self._mutex = threading.Lock()
        #: batches and units committed since start (for tests and metrics)
        self.batches = 0
        self.units = 0

    def run(self, work: Callable[[sqlite3.Connection], _T], *, durable: bool = True) -> _T:
        """``work(db)`` inside a write transaction; its result once committed (step 4)."""
        unit: _Unit[_T] = _Unit(work, durable)
        with self._mutex:
            self._queue.append(unit)
            lead = not self._leading
            self._leading = True  # step 1: the first waiting thread leads
        if not lead:
            unit.wake.acquire()  # until a leader answers it, or hands it the lead
            if unit.finished:
                return unit.outcome()
        try:
            while not unit.finished:  # this thread leads until its own unit is done
                with self._mutex:
                    batch = self._queue[: self._max_batch]
                    del self._queue[: self._max_batch]
                try:
                    self._locked_commit(batch)
                finally:
                    with self._mutex:
                        self.batches += 1
                        self.units += len(batch)
                    for done in batch:  # step 4: answered only now
                        done.finished = True
                        if done is not unit:
                            done.wake.release()
        finally:
            with self._mutex:
                if self._queue:  # the thread of the oldest waiting unit leads next
                    self._queue[0].wake.release()
                else:
                    self._leading = False
        return unit.outcome()

    def _locked_commit(self, batch: list[_Unit[Any]]) -> None:
        """Steps 2-3 under the writer lock.  When the lock cannot be taken no unit ran:
        each gets that error, never an answer of success."""
        committed = False
        try:
            with self._process_lock():
                self._commit(batch)
                committed = True
        except OSError as exc:
            if committed:  # releasing the lock failed: the batch stands as committed
                _log.warning("the store's writer lock was not released: %s", exc.strerror)
                return
            for unit in batch:
                if unit.error is None:
                    unit.error = errors.StoreUnavailable(
                        f"the store's writer lock cannot be taken: {exc.strerror}",
                        details=["retry the request; check the CAS state directory"])

    @contextlib.contextmanager
    def _process_lock(self) -> Iterator[None]:
        """The writer lock file, held by the leader for its batch (step 2)."""
        if self._lock_fd < 0:
            yield
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _commit(self, batch: list[_Unit[Any]]) -> None:
        """Steps 2 and 3 for ``batch``; every unit ends with a result or an error."""
        db = self._connect()
        try:
            sync = "FULL" if any(u.durable for u in batch) else "NORMAL"
            if self._sync.get(id(db)) != sync:  # a pragma only when it changes
                db.execute(f"PRAGMA synchronous={sync}")
                self._sync[id(db)] = sync
            db.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            for unit in batch:
                unit.error = exc
            return
        if len(batch) == 1:  # alone: the transaction is the unit's savepoint
            self._commit_one(db, batch[0])
            return
        lost: BaseException | None = None  # what ended the whole transaction early
        for i, unit in enumerate(batch):
            if lost is not None:
                unit.error = lost
                continue
            try:
                db.execute("SAVEPOINT unit")
                unit.result = unit.work(db)
                db.execute("RELEASE unit")
            except BaseException as exc:
                unit.error = exc
                if not _undo_unit(db):  # SQLite rolled everything back (SQLITE_FULL …)
                    lost = exc
                    for earlier in batch[:i]:
                        if earlier.error is None:
                            earlier.error = exc
        try:
            if db.in_transaction:
                db.execute("COMMIT")
        except BaseException as exc:
            _rollback(db)
            for unit in batch:
                if unit.error is None:
                    unit.error = exc


    def _commit_one(self, db: sqlite3.Connection, unit: _Unit[Any]) -> None:
        try:
            unit.result = unit.work(db)
            db.execute("COMMIT")
        except BaseException as exc:
            unit.error = exc
            _rollback(db)


def _undo_unit(db: sqlite3.Connection) -> bool:
    """Roll back to the unit's savepoint; False if the transaction itself is gone."""
    if not db.in_transaction:
        return False
    try:
        db.execute("ROLLBACK TO unit")
        db.execute("RELEASE unit")
    except sqlite3.Error:
        _rollback(db)
        return False
    return True


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
