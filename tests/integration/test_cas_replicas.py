"""Two real CAS replicas (``cloister cas serve --store postgresql://…``) on one real PostgreSQL.

What a user of an HA CAS relies on, shown with real processes: one identity for
both replicas, a write acknowledged by one read back by the other, an attestation
whose nonce came from one replica accepted by the other (and only once), exactly one
winner among concurrent updates sent to different replicas, no acknowledged
write lost and no half session after ``kill -9`` of a replica mid-write, and
503 JSON (never 500) while PostgreSQL is stopped, with recovery — without a
restart of either replica — once it starts again.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cas_harness import CA_SESSION, CAS, Identity, Reply, init_state, make_identity

from cloister.cas import ServerConfig, open_store
from cloister.policy import load_session
from pg_harness import PostgresCluster, running_cluster

SESSION = CA_SESSION


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    # a cluster of its own: these tests stop and start it
    with running_cluster() as pg:
        yield pg


class Replicas:
    """Two CAS processes sharing a database and a master key file."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        key = tmp_path / "master.key"
        key.write_bytes(os.urandom(32))
        key.chmod(0o600)
        args = ("--store", url, "--master-key-file", str(key))
        self.key = key.read_bytes()
        self.key_file = key
        self.url = url
        self.cas = [CAS(tmp_path / f"state-{i}", tmp_path / f"cas-{i}.log", args)
                    for i in range(2)]
        # one seal for both: init once (the key file becomes the master key), copy seal.json
        init_state(self.cas[0].state, "--seal", "file", "--key-file", str(key), "--store", url)
        self.cas[1].state.mkdir(mode=0o700)
        shutil.copy(self.cas[0].state / "seal.json", self.cas[1].state / "seal.json")

    def start(self) -> None:
        for cas in self.cas:
            cas.start()

    def stop(self) -> None:
        for cas in self.cas:
            cas.stop()


@pytest.fixture
def replicas(tmp_path: Path, cluster: PostgresCluster) -> Iterator[Replicas]:
    pair = Replicas(tmp_path, cluster.url(cluster.new_database("replicas")))
    pair.start()
    try:
        yield pair
    finally:
        pair.stop()


@pytest.fixture
def owner(tmp_path: Path) -> Identity:
    return make_identity(tmp_path / "ids", "owner")


def _create(cas: CAS, ident: Identity, name: str) -> Reply:
    return cas.curl("/session", identity=ident, data=SESSION.format(name=name).encode())


def test_one_identity_and_a_write_on_one_replica_reads_back_on_the_other(
        replicas: Replicas, owner: Identity) -> None:
    a, b = replicas.cas
    # clients pin one certificate: both replicas chain to the same CA
    assert (a.state / "cas-ca.pem").read_bytes() == (b.state / "cas-ca.pem").read_bytes()
    assert not list(a.state.glob("*key*")), "a replica wrote a private key to its state dir"
    created = _create(a, owner, "written-on-a")
    assert created.status == 201, created.body
    read = b.curl("/v1/sessions/written-on-a", identity=owner)  # --cacert: a's CA file
    assert read.status == 200 and read.json()["hash"] == created.json()["hash"]
    value_a = a.curl("/v1/values/session=written-on-a,secret=ca").json()["value"]
    value_b = b.curl("/v1/values/session=written-on-a,secret=ca").json()["value"]
    assert value_a == value_b  # one secret, generated once, served by both
    # a replica restarted later is still the same CAS
    b.stop()
    b.start()
    assert (b.state / "cas-ca.pem").read_bytes() == (a.state / "cas-ca.pem").read_bytes()
    assert b.curl("/v1/sessions/written-on-a", identity=owner).status == 200


def test_replicas_initialised_each_on_its_own_with_one_key_are_one_cas(
        tmp_path: Path, cluster: PostgresCluster, owner: Identity) -> None:
    """As the Helm chart starts them: every replica at once (a Parallel StatefulSet), each
    on an empty state directory of its own, ``cas serve --init-file-seal`` with its copy
    of one master key (the Secret): one seal, one keyring, one identity."""
    url = cluster.url(cluster.new_database("init_parallel"))
    key = os.urandom(32)
    cas = []
    for i in range(3):
        key_file = tmp_path / f"keys-{i}" / "master.key"
        key_file.parent.mkdir()
        key_file.write_bytes(key)
        key_file.chmod(0o600)
        cas.append(CAS(tmp_path / f"state-{i}", tmp_path / f"cas-{i}.log",
                       ("--store", url, "--init-file-seal", str(key_file)), init=False))
    try:  # stopped even when one of them fails to start
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(CAS.start, cas))
        seals = [json.loads((c.state / "seal.json").read_text()) for c in cas]
        assert len({s["seal_id"] for s in seals}) == 1, seals
        assert len({(c.state / "cas-ca.pem").read_bytes() for c in cas}) == 1
        created = _create(cas[0], owner, "written-on-0")
        assert created.status == 201, created.body
        for other in cas[1:]:
            read = other.curl("/v1/sessions/written-on-0", identity=owner)
            assert read.status == 200 and read.json()["hash"] == created.json()["hash"]
        cas[2].stop()
        cas[2].start()  # a restart unseals with the same key: still the same CAS
        assert (cas[2].state / "cas-ca.pem").read_bytes() == (cas[0].state / "cas-ca.pem") \
            .read_bytes()
    finally:
        for c in cas:
            c.stop()


def test_concurrent_updates_to_two_replicas_exactly_one_wins(
        replicas: Replicas, owner: Identity) -> None:
    created = _create(replicas.cas[0], owner, "contended")
    assert created.status == 201
    predecessor = created.json()["hash"]
    bodies = [(SESSION.format(name="contended") + f"  - name: extra{i}\n    kind: ascii\n"
               f"predecessor: {predecessor}\n").encode() for i in range(10)]
    barrier = threading.Barrier(10)

    def update(i: int) -> Reply:
        barrier.wait()
        return replicas.cas[i % 2].curl("/session", identity=owner, data=bodies[i])

    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(update, range(10)))
    statuses = sorted(r.status for r in replies)
    assert statuses == [200] + [409] * 9, [(r.status, r.body[:200]) for r in replies]
    winner = next(r for r in replies if r.status == 200).json()["hash"]
    for cas in replicas.cas:
        assert cas.curl("/v1/sessions/contended", identity=owner).json()["hash"] == winner
    for loser in (r for r in replies if r.status == 409):
        assert loser.json()["error"]["code"] == "conflict"


ATTESTED = """\
name: attested
version: "0.3"
services:
  - name: app
    mrenclaves: [{measurement}]
    command: python3 /app.py
    environment:
      TOKEN: $$SCONE::token$$
secrets:
  - name: token
    kind: ascii
security:
  attestation:
    tolerate: [debug-mode]
"""


def test_attestation_nonce_from_one_replica_config_from_the_other(
        replicas: Replicas, owner: Identity, tmp_path: Path) -> None:
    from run_harness import LAS, python_measurement  # noqa: PLC0415

    from cloister import errors  # noqa: PLC0415
    from cloister.attest import (  # noqa: PLC0415
        generate_ephemeral_key,
        open_sealed,
        public_key_bytes_of,
        report_data,
        simulation,
    )
    from cloister.client._transport import post_json  # noqa: PLC0415

    a, b = replicas.cas
    measurement = python_measurement()
    assert a.curl("/session", identity=owner,
                  data=ATTESTED.format(measurement=measurement).encode()).status == 201
    las = LAS(tmp_path / "las", tmp_path / "las.log")
    las.start()
    try:
        # the owner vouches for the LAS on one replica: the enrolment is in the shared store
        enrolled = a.curl("/v1/platforms", identity=owner, data=json.dumps(
            {"platform_id": las.platform_id()}).encode())
        assert enrolled.status == 201, enrolled.body
        pin = (a.state / "cas-ca.pem").read_text()  # one pinned CA for both replicas
        nonce = bytes.fromhex(post_json("127.0.0.1", a.port, "/v1/attest/nonce", {}, pin)["nonce"])
        key = generate_ephemeral_key()
        public = public_key_bytes_of(key)
        # signed with the LAS's key (as its host could): this test is about the replicas
        evidence = simulation.sign_simulation(
            simulation.load_or_create_platform_key(las.state), measurement=measurement,
            fspf_tag=None, report_data_hex=report_data(nonce, public).hex(), uid=os.getuid(),
            gid=os.getgid())
        body = {"config_id": "attested/app", "nonce": nonce.hex(), "public_key": public.hex(),
                "evidence": base64.b64encode(evidence).decode()}
        answer = post_json("127.0.0.1", b.port, "/v1/attest/config", body, pin)
        config = json.loads(open_sealed(key, base64.b64decode(answer["sealed_config"])))
        assert config["environment"]["TOKEN"]  # the session's secret, released by b
        # the nonce is spent for every replica: a replay to a is refused
        with pytest.raises(errors.AttestationError, match="attestation refused"):
            post_json("127.0.0.1", a.port, "/v1/attest/config", body, pin)
        assert "nonce" in (a.state / "audit.log").read_text().splitlines()[-1]
    finally:
        las.stop()


def test_kill9_of_a_replica_mid_write_loses_nothing_acknowledged(
        replicas: Replicas, owner: Identity) -> None:

    victim, survivor = replicas.cas
    acknowledged: list[str] = []
    lock = threading.Lock()
    enough, dead = threading.Event(), threading.Event()

    def client(n: int) -> None:
        i = 0
        while not dead.is_set():
            name = f"k9-{n}-{i}"
            i += 1
            try:
                reply = _create(victim, owner, name)
            except Exception:  # curl fails once the replica is gone
                continue
            if reply.status == 201:
                with lock:
                    acknowledged.append(name)
                    if len(acknowledged) >= 24:
                        enough.set()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    assert enough.wait(timeout=240), "the replica acknowledged too few writes"
    victim.kill9()  # while six clients are still writing
    dead.set()
    for t in threads:
        t.join()

    # every acknowledged session is there, complete, through the other replica
    for name in acknowledged:
        read = survivor.curl(f"/v1/sessions/{name}", identity=owner)
        assert read.status == 200, (name, read.body)
    store = open_store(ServerConfig(state=replicas.cas[0].state, store_url=replicas.url,
                                    master_key_file=replicas.key_file))
    try:
        assert store.check_integrity() == []
        for name in store.names():
            record = store.current(name)
            assert record is not None, name
            expected = {s.name for s in load_session(record.text).secrets}
            assert set(store.secrets(name, record.hash)) == expected, f"half session {name}"
        assert set(acknowledged) <= set(store.names())
    finally:
        store.close()


def _is_503_json(reply: Reply) -> bool:
    if reply.status != 503:
        return False
    error = json.loads(reply.body)["error"]
    return error["code"] == "store_unavailable" and "unreachable" in error["message"]


def test_postgresql_stopped_replicas_answer_503_json_and_recover_without_restart(
        replicas: Replicas, owner: Identity, cluster: PostgresCluster) -> None:
    for i, cas in enumerate(replicas.cas):
        assert _create(cas, owner, f"before-{i}").status == 201
    pids = [cas.proc.pid for cas in replicas.cas if cas.proc is not None]
    cluster.stop()
    try:
        for i, cas in enumerate(replicas.cas):
            for reply in (_create(cas, owner, f"during-{i}"),
                          cas.curl(f"/v1/sessions/before-{i}", identity=owner),
                          cas.curl("/v1/values/session=before-0"),
                          cas.curl("/healthz")):
                assert _is_503_json(reply), (reply.status, reply.body[:300])
                assert b"Traceback" not in reply.body
    finally:
        cluster.start()
    for i, cas in enumerate(replicas.cas):
        assert cas.curl("/healthz").status == 200
        assert _create(cas, owner, f"after-{i}").status == 201
        other = replicas.cas[1 - i]
        assert other.curl(f"/v1/sessions/after-{i}", identity=owner).status == 200
        # nothing refused during the outage was written
        assert cas.curl(f"/v1/sessions/during-{i}", identity=owner).status == 404
    assert [cas.proc.pid for cas in replicas.cas if cas.proc is not None] == pids
