"""Fixtures shared by the CAS unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloister.cas import AuditLog, sealed_sqlite
from cloister.cas._engine_secrets import SecretsEngine
from cloister.cas._sessions import SessionService


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[SessionService]:
    store = sealed_sqlite(tmp_path / "cas.db", bytes(32))
    audit = AuditLog(tmp_path / "audit.log")
    yield SessionService(store, SecretsEngine(), audit)
    store.close()
    audit.close()
