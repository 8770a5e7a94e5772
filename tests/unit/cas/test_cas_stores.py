"""Choosing a store by URL; a PostgreSQL URL's password never reaches a message."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cloister import errors
from cloister.cas._postgres import PostgresSettings, PostgresStore, describe_url
from cloister.cas._stores import is_shared, open_store_url


def test_unknown_scheme_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="store 'mysql' is not supported") as info:
        open_store_url("mysql://db/cas", tmp_path)
    assert any("postgresql://" in d for d in info.value.details)
    assert is_shared("postgresql://x/y") and is_shared("postgres://x/y")
    assert not is_shared("sqlite") and not is_shared("sqlite:///tmp/x.db")


def test_describe_url_drops_password_and_options() -> None:
    url = "postgresql://cas:hunter2-db-password@db.example:6432/cas?sslmode=verify-full"
    assert describe_url(url) == "postgresql://cas@db.example:6432/cas"
    assert "hunter2" not in describe_url("postgresql://u:hunter2@h/d")


def test_unreachable_database_is_503_class_and_says_no_password() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://cas:hunter2-db-password@127.0.0.1:{port}/cas"
    with pytest.raises(errors.StoreUnavailable) as info:
        PostgresStore(url, PostgresSettings(connect_timeout=2))
    text = " ".join(info.value.lines())
    assert "cannot reach the CAS store" in text and f"127.0.0.1:{port}/cas" in text
    assert "sslmode" in text  # how to fix it
    assert "hunter2" not in text


def test_an_unparsable_url_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match="cannot be parsed"):
        PostgresStore("postgresql://[broken")
