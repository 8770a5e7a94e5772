"""The CAS state directory runs out of space: writes fail cleanly, nothing is corrupt,
and the CAS takes writes again once space returns — without a restart."""

from __future__ import annotations

from pathlib import Path

from fault_harness import SESSION, fill, json_error, tmpfs

from cas_harness import CAS, make_identity  # isort: skip  (found through fault_harness)
from cloister.cas import ServerConfig, check_state, open_store


def test_disk_full_is_507_json_and_recovers_without_restart(tmp_path: Path) -> None:
    ident = make_identity(tmp_path / "ids", "owner")
    with tmpfs(tmp_path / "small", "6m") as state:
        cas = CAS(state, tmp_path / "cas.log")  # the log is elsewhere: only the state fills
        cas.start()
        try:
            acknowledged = []
            for i in range(3):
                reply = cas.curl("/session", identity=ident,
                                 data=SESSION.format(name=f"before-{i}").encode())
                assert reply.status == 201, reply.body
                acknowledged.append((f"before-{i}", reply.json()["hash"]))

            filler = fill(state)
            refused: list[str] = []
            for i in range(5):  # several: the first failure must not wedge the store
                reply = cas.curl("/session", identity=ident,
                                 data=SESSION.format(name=f"full-{i}").encode())
                if reply.status == 201:  # a page freed by SQLite can still fit a small write
                    acknowledged.append((f"full-{i}", reply.json()["hash"]))
                    continue
                assert reply.status in (503, 507), (reply.status, reply.body)
                err = json_error(reply.status, reply.body)
                assert "full" in err["message"] or "space" in err["message"], err
                refused.append(f"full-{i}")
            assert len(refused) >= 3, "a full disk did not refuse writes"
            # reads keep working while the disk is full
            assert cas.curl("/healthz").status == 200
            for name, _ in acknowledged:
                assert cas.curl(f"/v1/sessions/{name}", identity=ident).status == 200, name

            filler.unlink()  # space returns; the same CAS process takes writes again
            for i in range(3):
                reply = cas.curl("/session", identity=ident,
                                 data=SESSION.format(name=f"after-{i}").encode())
                assert reply.status == 201, (reply.status, reply.body)
                acknowledged.append((f"after-{i}", reply.json()["hash"]))
            # every name refused while full was not half-written: a create succeeds now
            # (a half-written row would make it 409) and reads back complete (below)
            for name in refused:
                reply = cas.curl("/session", identity=ident,
                                 data=SESSION.format(name=name).encode())
                assert reply.status == 201, (name, reply.status, reply.body)
                acknowledged.append((name, reply.json()["hash"]))
        finally:
            cas.stop()

        config = ServerConfig(state=state)
        assert check_state(config) == []  # PRAGMA integrity_check, foreign keys, every secret
        store = open_store(config)
        try:
            for name, session_hash in acknowledged:
                record = store.current(name)
                assert record is not None and record.hash == session_hash, name
                assert set(store.secrets(name, session_hash)) == {"ca_key", "ca", "pw"}, name
        finally:
            store.close()
