"""Who runs each demo service (:mod:`cloister.demo._users`): separate uids only where they
can work, else the invoking user, with the reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloister.demo import Layout
from cloister.demo._users import API_ID, service_users


def test_a_directory_other_users_cannot_enter_means_one_user(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    users = service_users(Layout.of(closed / "demo"))
    me = (os.getuid(), os.getgid())
    assert (users.redis, users.api) == (me, me) and not users.separate
    if os.geteuid() == 0:
        assert "cannot enter" in users.shared_because, users.shared_because
    else:
        assert users.shared_because == "not started as root"


def test_root_in_an_open_directory_separates_the_services(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("separate uids are for a demo started as root")
    users = service_users(Layout.of(Path("/") / "demo-not-created"))
    if not users.separate:  # e.g. this test's interpreter lives under /root
        assert "cannot enter" in users.shared_because or "account" in users.shared_because
        return
    assert users.api == API_ID and users.redis != users.api
