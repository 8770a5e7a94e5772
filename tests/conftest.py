"""Fixtures shared by every test layer (helpers live in ``support``)."""

from __future__ import annotations

import pytest

from support import SEED_VARIABLES


@pytest.fixture
def seed_variables() -> dict[str, str]:
    return dict(SEED_VARIABLES)


@pytest.fixture(scope="session")
def pg_cluster():  # type: ignore[no-untyped-def]
    """One throwaway PostgreSQL cluster per test process (skips, saying why, without one)."""
    from pg_harness import running_cluster  # noqa: PLC0415

    with running_cluster() as cluster:
        yield cluster
