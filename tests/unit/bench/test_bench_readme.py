"""The README's performance table is exactly what bench/results.json says."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root holds bench/

from bench import readme


def test_the_committed_results_and_chart_exist() -> None:
    assert readme.RESULTS.is_file(), "bench/results.json must be committed (make bench)"
    assert (readme.RESULTS.parent / "results.png").is_file(), "bench/results.png too"
    meta = json.loads(readme.RESULTS.read_text())["meta"]
    assert meta["started"] and meta["seconds"] > 0 and meta["machine"]["cores"]
    assert "--quick" not in meta["command"] and "--only" not in meta["command"], (
        "the README shows a full run")


def test_the_readme_table_is_generated_from_the_results() -> None:
    results = json.loads(readme.RESULTS.read_text())
    text = readme.README.read_text()
    assert readme.current(text) == readme.section(results), (
        "the README's performance table differs from bench/results.json: "
        "run python -m bench.readme --write")


def test_every_figure_becomes_a_row_and_a_changed_number_shows() -> None:
    results = json.loads(readme.RESULTS.read_text())
    made = readme.section(results)
    assert made.count("\n| ") - 2 == len(results["figures"])  # header, rule, one row each
    first = next(f for f in results["figures"] if f.get("subject"))
    first["subject"]["median"] = 123456.0
    assert "123,456" in readme.section(results)
    with pytest.raises(ValueError, match="no <!-- bench:begin -->"):
        readme.render("# no markers\n", results)
