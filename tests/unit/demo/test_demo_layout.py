"""Demo directory layout: stable session names, source digests, tmpfs TLS directory."""

from __future__ import annotations

from pathlib import Path

from cloister.demo import Layout
from cloister.demo._layout import default_app_dir, source_digest


def test_session_names_are_chosen_once_per_directory(tmp_path: Path) -> None:
    first = Layout.of(tmp_path).session_names()
    assert first == Layout.of(tmp_path).session_names()
    assert first[0].startswith("patients-flask-") and first[1].startswith("patients-redis-")
    other = tmp_path / "other"
    other.mkdir()
    assert Layout.of(other).session_names() != first


def test_redis_tls_directory_is_below_dev_shm_and_per_directory(tmp_path: Path) -> None:
    a, b = Layout.of(tmp_path / "a"), Layout.of(tmp_path / "b")
    assert a.redis_tls.parent == Path("/dev/shm")
    assert a.redis_tls != b.redis_tls
    assert Layout.of(tmp_path / "a").redis_tls == a.redis_tls


def test_source_digest_follows_content_not_bytecode(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("print(1)\n")
    before = source_digest(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0" * 10)
    assert source_digest(tmp_path) == before
    (tmp_path / "app.py").write_text("print(2)\n")
    assert source_digest(tmp_path) != before


def test_the_checkout_holds_the_patient_service() -> None:
    app = default_app_dir()
    assert app is not None
    assert (app / "rest_api.py").is_file()
    assert (app / "policies" / "flask.yml").is_file()
    assert (app / "policies" / "redis.yml").is_file()
