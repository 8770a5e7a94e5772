"""The throwaway PostgreSQL cluster of :mod:`bench._pg` for tests: skips, with the reason
printed, where PostgreSQL or psycopg is missing.  Each test takes a database of its own
(:meth:`PostgresCluster.new_database`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from bench import _pg
from bench._pg import PostgresCluster

__all__ = ["PostgresCluster", "running_cluster"]


@contextmanager
def running_cluster() -> Iterator[PostgresCluster]:
    """Start a throwaway cluster (skipping, with the reason, where impossible); stop and
    remove it afterwards."""
    reason = _pg.unavailable()
    if reason:
        pytest.skip(reason)
    with _pg.running_cluster() as cluster:
        yield cluster
