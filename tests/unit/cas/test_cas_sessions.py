"""SessionService: export/import rules across sessions, history reads, audit entries."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from cloister import errors
from cloister.cas import AuditLog, Caller, sealed_sqlite
from cloister.cas._engine_secrets import SecretsEngine
from cloister.cas._sessions import SessionService
from cloister.policy import load_session
from cloister.secrets import SecretValue

ALICE = Caller("a" * 64, "PEM-A")

EXPORTER = """name: {name}
version: '0.3'
secrets:
  - name: ca_key
    kind: private-key
    {key_export}
  - name: ca
    kind: x509-ca
    private_key: ca_key
    export:
      - {target}
  - name: pw
    kind: ascii
"""

IMPORTER = """name: {name}
version: '0.3'
secrets:
  - name: their_ca
    import:
      session: {src}
      secret: ca
"""


def _released(svc: SessionService, name: str, secret: str) -> SecretValue:
    return SecretValue.from_bytes(svc.released_values(name)[1][secret])


def test_imported_certificate_brings_key_only_if_key_exported(svc: SessionService) -> None:
    svc.write(EXPORTER.format(name="src", key_export="", target="session: dst"), ALICE)
    svc.write(IMPORTER.format(name="dst", src="src"), ALICE)
    assert _released(svc, "dst", "their_ca").key_pem is None
    assert _released(svc, "dst", "their_ca").cert_pem == _released(svc, "src", "ca").cert_pem

    svc.write(
        EXPORTER.format(name="src2", key_export="export: [{session: dst2}]",
                        target="session: dst2"), ALICE)
    svc.write(IMPORTER.format(name="dst2", src="src2"), ALICE)
    assert _released(svc, "dst2", "their_ca").key_pem == _released(svc, "src2", "ca_key").key_pem


def test_namespace_export_admits_only_that_namespace(svc: SessionService) -> None:
    svc.write(EXPORTER.format(name="lib", key_export="", target="namespace: team"), ALICE)
    svc.write("name: team\nversion: '0.3'\n", ALICE)
    svc.write(IMPORTER.format(name="team/app", src="lib"), ALICE)
    with pytest.raises(errors.SecretError) as info:
        svc.write(IMPORTER.format(name="other", src="lib"), ALICE)
    text = " ".join(info.value.lines())
    assert "'other'" in text and "'lib'" in text and "'ca'" in text


def test_import_from_missing_session_names_all(svc: SessionService) -> None:
    with pytest.raises(errors.SecretError, match="create 'later' first") as info:
        svc.write(IMPORTER.format(name="early", src="later"), ALICE)
    assert "'their_ca'" in info.value.message and "'early'" in info.value.message


def test_history_read_and_audit_never_holds_values(svc: SessionService, tmp_path: Path) -> None:
    first = svc.write(EXPORTER.format(name="h", key_export="", target="session: x"), ALICE)
    text2 = EXPORTER.format(name="h", key_export="", target="session: y") + \
        f"predecessor: {first.record.hash}\n"
    second = svc.write(text2, ALICE)
    assert not second.created
    assert svc.read("h", ALICE, first.record.hash).text.endswith("pw\n    kind: ascii\n")
    with pytest.raises(errors.NotFound):
        svc.read("h", ALICE, "f" * 64)
    pw = _released(svc, "h", "pw").text
    assert pw is not None
    log = (tmp_path / "audit.log").read_text()
    assert pw not in log
    entries = [json.loads(line) for line in log.splitlines()]
    assert {"time", "caller", "action", "session", "decision", "reason"} <= set(entries[0])
    assert [e["action"] for e in entries][:2] == ["create", "update"]


MALLORY = Caller("f" * 64, "PEM-M")


def test_export_to_a_name_cannot_be_claimed_by_another_owner(svc: SessionService) -> None:
    """Alice exports to 'dst' before it exists; Mallory creating 'dst' first gets nothing."""
    svc.write(EXPORTER.format(name="src", key_export="export: [{session: dst}]",
                              target="session: dst"), ALICE)
    with pytest.raises(errors.SecretError) as info:
        svc.write(IMPORTER.format(name="dst", src="src"), MALLORY)
    assert "must pin its session_hash" in info.value.message
    # Alice's own importer is admitted
    svc.write(IMPORTER.format(name="dst", src="src"), ALICE)
    assert _released(svc, "dst", "their_ca").key_pem is not None


def test_an_identity_in_the_exporters_update_list_may_import(svc: SessionService) -> None:
    text = EXPORTER.format(name="src", key_export="", target="session: dst")
    svc.write(text + f"access_policy:\n  update: [CREATOR, {'f' * 64}]\n", ALICE)
    svc.write(IMPORTER.format(name="dst", src="src"), MALLORY)
    assert _released(svc, "dst", "their_ca").cert_pem == _released(svc, "src", "ca").cert_pem


def test_export_pinned_to_a_session_hash_admits_that_version_of_another_owner(
    svc: SessionService,
) -> None:
    importer = IMPORTER.format(name="dst", src="src")
    digest = load_session(importer).digest
    svc.write(EXPORTER.format(name="src", key_export="",
                              target=f"{{session: dst, session_hash: {digest}}}"), ALICE)
    svc.write(importer, MALLORY)
    assert _released(svc, "dst", "their_ca").key_pem is None


def test_key_export_pinned_to_another_version_is_not_brought_along(svc: SessionService) -> None:
    """The certificate is exported to 'dst'; its key only to another version of it."""
    svc.write(EXPORTER.format(
        name="src", key_export=f"export: [{{session: dst, session_hash: {'0' * 64}}}]",
        target="session: dst"), ALICE)
    svc.write(IMPORTER.format(name="dst", src="src"), ALICE)
    assert _released(svc, "dst", "their_ca").key_pem is None


def _tamper(path: Path, sql: str, *args: str) -> None:
    """What a writer of the database file (without the master key) can do."""
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER IF EXISTS versions_no_update")
    db.execute(sql, args)
    db.commit()
    db.close()


def test_a_policy_swapped_in_the_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cas.db"
    store = sealed_sqlite(path, bytes(32))
    svc = SessionService(store, SecretsEngine(), AuditLog(tmp_path / "audit.log"))
    svc.write(EXPORTER.format(name="src", key_export="", target="session: dst"), ALICE)
    svc.write(EXPORTER.format(name="other", key_export="", target="session: dst"), ALICE)
    store.close()
    # the texts are sealed: the closest a writer gets is moving another row's sealed text
    _tamper(path, "UPDATE session_versions SET sealed_text = (SELECT sealed_text FROM "
                  "session_versions WHERE name = 'other') WHERE name = ?", "src")
    store = sealed_sqlite(path, bytes(32))
    svc = SessionService(store, SecretsEngine(), AuditLog(tmp_path / "audit2.log"))
    with pytest.raises(errors.StoreError, match="failed authentication"):
        svc.released_values("src")
    store.close()


def test_a_creator_swapped_in_the_store_makes_secrets_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "cas.db"
    store = sealed_sqlite(path, bytes(32))
    svc = SessionService(store, SecretsEngine(), AuditLog(tmp_path / "audit.log"))
    svc.write(EXPORTER.format(name="src", key_export="", target="session: dst"), ALICE)
    store.close()
    _tamper(path, "UPDATE session_versions SET creator_key_hash = ?", MALLORY.key_hash)
    store = sealed_sqlite(path, bytes(32))
    with pytest.raises(errors.StoreError):
        store.secrets("src", store.current("src").hash)  # type: ignore[union-attr]
    assert store.check_integrity() != []
    store.close()


def test_the_creator_quota_holds_across_processes_and_every_refusal_is_audited(
        tmp_path: Path) -> None:
    """Two CAS processes on one store: each counts what it saw, the store counts exactly."""
    from cloister.cas._limits import Limits  # noqa: PLC0415

    audit = AuditLog(tmp_path / "audit.log")
    stores = [sealed_sqlite(tmp_path / "cas.db", bytes(32)) for _ in range(2)]
    one, two = (SessionService(s, SecretsEngine(), audit, limits=Limits(max_sessions_per_creator=3))
                for s in stores)
    text = "name: {}\nversion: '0.3'\nsecrets:\n  - name: pw\n    kind: ascii\n"
    one.write(text.format("a"), ALICE)
    one.write(text.format("b"), ALICE)
    two.write(text.format("c"), ALICE)  # the first process has not seen this one
    with pytest.raises(errors.QuotaExceeded, match="max_sessions_per_creator"):
        one.write(text.format("d"), ALICE)  # refused by the store's own count
    assert stores[0].current("d") is None
    with pytest.raises(errors.QuotaExceeded):
        two.write(text.format("e"), ALICE)
    assert one.write(text.format("f"), Caller("b" * 64, "PEM-B")).created  # another creator
    denied = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    refusals = [e for e in denied if e["decision"] == "deny"]
    assert [(e["session"], e["reason"].split(":")[0]) for e in refusals] == [
        ("d", "quota_exceeded"), ("e", "quota_exceeded")]
    for s in stores:
        s.close()
    audit.close()
