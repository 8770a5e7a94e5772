"""The bench's arithmetic and report: percentiles, paired ratios, targets, table, JSON, chart.

No timing here: only that the numbers the bench prints are computed right.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo root holds bench/

from bench import _report
from bench._stats import (
    Figure,
    Summary,
    Target,
    absolute,
    compared,
    median,
    paired_ratios,
    percentile,
    skipped,
)


def test_percentile_interpolates_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert median(values) == 2.5
    assert percentile(values, 25) == pytest.approx(1.75)
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert median([7.0]) == 7.0


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_paired_ratios_are_per_round() -> None:
    assert paired_ratios([2.0, 3.0, 8.0], [1.0, 3.0, 4.0]) == [2.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="2 subject runs but 1"):
        paired_ratios([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="zero"):
        paired_ratios([1.0], [0.0])


def test_compared_reports_median_of_paired_ratios_not_ratio_of_medians() -> None:
    fig = compared("s", "f", "ms", [10.0, 30.0, 12.0], [10.0, 10.0, 12.0], "base",
                   target=Target("<=", 1.10))
    assert fig.subject == Summary.of([10.0, 30.0, 12.0])
    assert fig.ratio is not None
    assert fig.ratio.median == 1.0  # ratios 1, 3, 1
    assert (fig.ratio.lo, fig.ratio.hi) == (1.0, 3.0)
    assert fig.holds is True


def test_targets_both_directions() -> None:
    assert Target(">=", 0.95).holds(0.95) and not Target(">=", 0.95).holds(0.94)
    assert Target("<=", 1.5).holds(1.5) and not Target("<=", 1.5).holds(1.51)
    with pytest.raises(ValueError, match="operator"):
        Target("<", 1.0)
    throughput = compared("api", "t", "req/s", [90.0, 94.0], [100.0, 100.0], "native",
                          target=Target(">=", 0.95))
    assert throughput.holds is False
    latency = absolute("attest", "p50", "ms", [10.0, 20.0, 60.0], target=Target("<=", 50))
    assert latency.holds is True  # the median (20) against the target, not the worst run


def test_skipped_figures_never_hold_and_show_their_reason() -> None:
    fig = skipped("import", "pyconcrete vs .pyc", "did not install: no compiler")
    assert fig.holds is None
    text = _report.table([fig])
    assert "skipped" in text
    assert "did not install: no compiler" in text


def test_table_json_and_chart(tmp_path: Path) -> None:
    figures = [
        compared("api", "c=1 throughput", "req/s", [99.0, 101.0], [100.0, 100.0], "native",
                 target=Target(">=", 0.95), note="keep-alive"),
        absolute("attest", "p50", "ms", [12.0, 14.0], target=Target("<=", 50)),
        Figure("cas", "no numbers"),
    ]
    text = _report.table(figures)
    lines = text.splitlines()
    assert lines[0].startswith("section")
    assert "1.000x [0.990-1.010]" in text
    assert "ratio >= 0.95" in text and "value <= 50" in text
    assert "(1) keep-alive" in text
    out = tmp_path / "results.json"
    _report.write_json(str(out), figures, {"command": "python -m bench"})
    data = json.loads(out.read_text())
    assert data["meta"]["command"] == "python -m bench"
    assert [f["holds"] for f in data["figures"]] == [True, True, None]
    assert data["figures"][0]["ratio"]["median"] == 1.0
    pytest.importorskip("matplotlib", reason="the chart needs the bench extra: pip install "
                        "'.[bench]'")
    png = tmp_path / "results.png"
    assert _report.write_chart(str(png), figures) is None
    assert png.read_bytes().startswith(b"\x89PNG")


def test_number_formatting() -> None:
    assert _report.fmt_summary(Summary.of([1234.0, 2000.0]), "/s") == "1,617 /s [1,234-2,000]"
    assert _report.fmt_summary(Summary.of([0.25]), "ms") == "0.250 ms"
    assert _report.fmt_ratio(None) == ""
