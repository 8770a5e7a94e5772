"""``cloister cas migrate``: a real single CAS (SQLite) moved onto PostgreSQL, then served by a
replica that clients reach with the certificate they pinned before."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cas_harness import CA_SESSION, CAS, CLOISTER, key_file_of, make_identity

from pg_harness import PostgresCluster

SESSION = CA_SESSION + "{extra}"


def _migrate(state: Path, url: str, key: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--master-key-file", str(key)] if key else []
    return subprocess.run([CLOISTER, "cas", "migrate", "--from", str(state), "--to", url, *extra],
                          capture_output=True, text=True, timeout=120)


def test_migrate_copies_the_whole_history_and_the_identity(
        tmp_path: Path, pg_cluster: PostgresCluster) -> None:
    owner = make_identity(tmp_path / "ids", "owner")
    single = CAS(tmp_path / "single", tmp_path / "single.log")
    single.start()
    hashes: dict[str, list[str]] = {}
    try:
        for name in ("alpha", "beta"):
            reply = single.curl("/session", identity=owner,
                                data=SESSION.format(name=name, extra="").encode())
            assert reply.status == 201, reply.body
            hashes[name] = [reply.json()["hash"]]
        for i in range(2):  # alpha gets a history of three versions
            body = SESSION.format(name="alpha", extra=f"  - name: more{i}\n    kind: ascii\n"
                                  f"predecessor: {hashes['alpha'][-1]}\n")
            reply = single.curl("/session", identity=owner, data=body.encode())
            assert reply.status == 200, reply.body
            hashes["alpha"].append(reply.json()["hash"])
        before = {name: single.curl(f"/v1/values/session={name},secret=ca").json()["value"]
                  for name in hashes}
    finally:
        single.stop()

    url = pg_cluster.url(pg_cluster.new_database("migrate"))
    done = _migrate(single.state, url)
    assert done.returncode == 0, done.stderr
    assert "copied 2 sessions (4 versions" in done.stdout
    assert "verified: every version, its secrets and the CAS CA are identical" in done.stdout
    again = _migrate(single.state, url)  # idempotent: an interrupted copy resumes
    assert again.returncode == 0 and "(0 versions, 0 secrets; 4 versions were there" in \
        again.stdout, again.stdout + again.stderr

    pinned = (single.state / "cas-ca.pem").read_bytes()
    replica = CAS(tmp_path / "replica", tmp_path / "replica.log",
                  ("--store", url, "--master-key-file", str(key_file_of(single.state))))
    replica.state.mkdir(mode=0o700)  # a replica starts on a copy of the seal
    shutil.copy(single.state / "seal.json", replica.state / "seal.json")
    replica.start()
    try:
        assert (replica.state / "cas-ca.pem").read_bytes() == pinned
        (replica.state / "cas-ca.pem").write_bytes(pinned)  # curl pins the old file
        for name, versions in hashes.items():
            current = replica.curl(f"/v1/sessions/{name}", identity=owner)
            assert current.status == 200 and current.json()["hash"] == versions[-1]
            for old in versions:
                assert replica.curl(f"/v1/sessions/{name}?hash={old}",
                                    identity=owner).status == 200
            value = replica.curl(f"/v1/values/session={name},secret=ca").json()["value"]
            assert value == before[name]  # the same secret, not a regenerated one
        # the history continues on the replica
        body = SESSION.format(name="beta", extra="  - name: later\n    kind: ascii\n"
                              f"predecessor: {hashes['beta'][-1]}\n")
        assert replica.curl("/session", identity=owner, data=body.encode()).status == 200
    finally:
        replica.stop()


def test_migrate_refuses_a_target_with_another_ca(tmp_path: Path,
                                                   pg_cluster: PostgresCluster) -> None:
    owner = make_identity(tmp_path / "ids", "owner")
    key = tmp_path / "master.key"  # one master key: only the CA differs
    key.write_bytes(bytes(range(32)))
    key.chmod(0o600)
    cas = [CAS(tmp_path / f"s{i}", tmp_path / f"s{i}.log",
               seal_args=("--seal", "file", "--key-file", str(key))) for i in range(2)]
    for i, one in enumerate(cas):
        one.start()
        assert one.curl("/session", identity=owner, data=SESSION.format(
            name=f"only-{i}", extra="").encode()).status == 201
        one.stop()
    url = pg_cluster.url(pg_cluster.new_database("migrate"))
    assert _migrate(cas[0].state, url, key).returncode == 0
    refused = _migrate(cas[1].state, url, key)
    # one provided key file is one seal (its id is derived from the key), so the keyring
    # opens: the other CA is what refuses the copy, before a session is copied
    assert refused.returncode != 0, refused.stdout
    assert "the target store already has another CAS CA" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
