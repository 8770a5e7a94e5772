"""Statistics for the benchmark: percentiles, paired ratios, targets, and the Figure record.

Invariants:
- every ratio is *subject / baseline* of runs measured in the same bench run,
  paired round by round (ABAB order) so that slow drift of the machine cancels;
  the reported ratio is the median of the per-round ratios, with their min/max;
- a percentile uses linear interpolation between closest ranks (numpy's default),
  so p50 of an even-length list is the mean of the two middle values;
- a figure whose piece is missing has ``status`` "skipped" (with the reason in
  ``note``) and no numbers; it never counts as holding its target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0 <= q <= 100) of ``values``, linearly interpolated."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


@dataclass(frozen=True)
class Summary:
    """Median and spread (min, max, interquartile range) of repeated runs."""

    median: float
    lo: float
    hi: float
    q1: float
    q3: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(median(values), float(min(values)), float(max(values)),
                   percentile(values, 25), percentile(values, 75), len(values))


def paired_ratios(subject: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Per-round ratios subject[i] / baseline[i]; rounds must pair one to one."""
    if len(subject) != len(baseline):
        raise ValueError(f"{len(subject)} subject runs but {len(baseline)} baseline runs")
    if not subject:
        raise ValueError("no runs to compare")
    if any(b <= 0 for b in baseline):
        raise ValueError("a baseline run measured zero or less")
    return [s / b for s, b in zip(subject, baseline, strict=True)]


@dataclass(frozen=True)
class Target:
    """``value op limit`` must hold, e.g. ratio <= 1.10 or ratio >= 0.95."""

    op: str
    limit: float

    def __post_init__(self) -> None:
        if self.op not in ("<=", ">="):
            raise ValueError(f"target operator {self.op!r} is not <= or >=")

    def holds(self, value: float) -> bool:
        return value <= self.limit if self.op == "<=" else value >= self.limit

    def __str__(self) -> str:
        return f"{self.op} {self.limit:g}"


@dataclass
class Figure:
    """One line of the table.

    ``subject``/``baseline`` summarise the raw measurements (in ``unit``);
    ``ratio`` summarises the paired per-round ratios.  ``target_on`` says
    whether the target applies to the ratio or to the subject's median.
    """

    section: str
    name: str
    unit: str = ""
    subject: Summary | None = None
    baseline: Summary | None = None
    baseline_name: str = ""
    ratio: Summary | None = None
    target: Target | None = None
    target_on: str = "ratio"
    status: str = "ok"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def holds(self) -> bool | None:
        """True/False against the target; None without a target or without numbers."""
        if self.target is None or self.status != "ok":
            return None
        value = self.ratio if self.target_on == "ratio" else self.subject
        return None if value is None else self.target.holds(value.median)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = None if self.target is None else str(self.target)
        data["holds"] = self.holds
        return data


def compared(  # noqa: PLR0917 - reads like the table row it makes
    section: str,
    name: str,
    unit: str,
    subject: Sequence[float],
    baseline: Sequence[float],
    baseline_name: str,
    *,
    target: Target | None = None,
    note: str = "",
) -> Figure:
    """A figure comparing paired runs of ``subject`` against ``baseline``."""
    return Figure(
        section, name, unit,
        subject=Summary.of(subject), baseline=Summary.of(baseline), baseline_name=baseline_name,
        ratio=Summary.of(paired_ratios(subject, baseline)), target=target, note=note,
    )


def absolute(
    section: str, name: str, unit: str, values: Sequence[float], *,
    target: Target | None = None, note: str = "",
) -> Figure:
    """A figure with no baseline, its target on the median of ``values``."""
    return Figure(section, name, unit, subject=Summary.of(values), target=target,
                  target_on="value", note=note)


def skipped(section: str, name: str, reason: str) -> Figure:
    return Figure(section, name, status="skipped", note=reason)
