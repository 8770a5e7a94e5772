"""``cloister demo up --store postgresql://…``: the seed walkthrough with the demo's CAS on a
real PostgreSQL (a throwaway cluster), and the sessions really live in that database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_harness import Demo, seed_walkthrough

from pg_harness import PostgresCluster

pytestmark = pytest.mark.slow  # a second whole demo: make test-all


@pytest.fixture(scope="module")
def pg_demo(tmp_path_factory: pytest.TempPathFactory,
            pg_cluster: PostgresCluster) -> Iterator[tuple[Demo, PostgresCluster, str]]:
    database = pg_cluster.new_database("demo")
    demo = Demo.fresh(tmp_path_factory.mktemp("pgdemo") / "demo")
    demo.up_args = ("--store", pg_cluster.url(database))
    done = demo.up()
    assert "store 127.0.0.1" in done.stdout, done.stdout  # the CAS said where its store is
    try:
        yield demo, pg_cluster, database
    finally:
        demo.cli("demo", "down", "--dir", str(demo.dir))


def test_seed_walkthrough_with_the_cas_on_postgresql(
        pg_demo: tuple[Demo, PostgresCluster, str], tmp_path: Path) -> None:
    demo, cluster, database = pg_demo
    seed_walkthrough(demo, tmp_path)
    # the sessions are in PostgreSQL, and no SQLite store was made
    names = cluster.psql(database, "SELECT name FROM current_sessions ORDER BY name").split()
    assert len(names) == 2 and any(n.startswith("patients-flask-") for n in names), names
    assert not (demo.dir / "cas" / "cas.db").exists()
    assert cluster.psql(database, "SELECT max(version) FROM schema_version").strip() != ""
