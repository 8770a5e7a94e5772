"""Printing the table, writing ``results.json`` and the PNG chart.

The table shows, per figure: the subject's median with its min-max spread,
the baseline likewise, the median paired ratio with its spread, the target
and whether it holds ("yes", "NO", or "-" without a target or numbers).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from typing import Any

from bench._stats import Figure, Summary


def format_number(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_summary(summary: Summary | None, unit: str = "") -> str:
    if summary is None:
        return ""
    unit = f" {unit}" if unit else ""
    if summary.n == 1:
        return f"{format_number(summary.median)}{unit}"
    spread = f"{format_number(summary.lo)}-{format_number(summary.hi)}"
    return f"{format_number(summary.median)}{unit} [{spread}]"


def fmt_ratio(summary: Summary | None) -> str:
    if summary is None:
        return ""
    if summary.n == 1:
        return f"{summary.median:.3f}x"
    return f"{summary.median:.3f}x [{summary.lo:.3f}-{summary.hi:.3f}]"


def verdict(figure: Figure) -> str:
    holds = figure.holds
    if holds is None:
        return "skipped" if figure.status != "ok" else "-"
    return "yes" if holds else "NO"


_HEADERS = ("section", "figure", "subject (median [min-max])", "baseline", "ratio",
            "target", "holds")


def rows(figures: Sequence[Figure]) -> list[tuple[str, ...]]:
    out = []
    for f in figures:
        baseline = fmt_summary(f.baseline, f.unit)
        if baseline and f.baseline_name:
            baseline = f"{f.baseline_name}: {baseline}"
        target = ""
        if f.target is not None:
            target = f"{'ratio' if f.target_on == 'ratio' else 'value'} {f.target}"
        out.append((f.section, f.name, fmt_summary(f.subject, f.unit), baseline,
                    fmt_ratio(f.ratio), target, verdict(f)))
    return out


def table(figures: Sequence[Figure]) -> str:
    """A plain-text table; notes (reasons for skips, definitions) follow it, numbered."""
    body = rows(figures)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
              for i, h in enumerate(_HEADERS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(_HEADERS, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    notes = []
    for figure, row in zip(figures, body, strict=True):
        cells = list(row)
        if figure.note:
            notes.append(figure.note)
            cells[1] = f"{cells[1]} ({len(notes)})"
        lines.append("  ".join(c.ljust(w + (4 if i == 1 else 0))
                               for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
                     .rstrip())
    if notes:
        lines.append("")
        lines += [f"({i}) {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Where the figures came from."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh
                        if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "system": platform.platform()}


def write_json(path: str, figures: Sequence[Figure], meta: dict[str, Any]) -> None:
    data = {"meta": meta, "figures": [f.to_json() for f in figures]}
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=False)
        fh.write("\n")


def write_chart(path: str, figures: Sequence[Figure]) -> str | None:
    """A horizontal bar chart of every ratio with its spread and target; None on success."""
    try:
        import matplotlib  # noqa: PLC0415 - optional: the table does not need it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as err:
        return f"no chart: matplotlib is not installed ({err}); pip install '.[bench]'"
    shown = [f for f in figures if f.ratio is not None and f.status == "ok"]
    if not shown:
        return "no chart: no ratios measured"
    labels = [f"{f.section}: {f.name}" for f in shown]
    medians = [f.ratio.median for f in shown if f.ratio]
    lows = [f.ratio.median - f.ratio.lo for f in shown if f.ratio]
    highs = [f.ratio.hi - f.ratio.median for f in shown if f.ratio]
    colours = []
    for f in shown:
        holds = f.holds
        colours.append("#999999" if holds is None else "#2a9d55" if holds else "#d04a3a")
    fig, ax = plt.subplots(figsize=(10, 0.38 * len(shown) + 1.6))
    ys = list(range(len(shown)))
    ax.barh(ys, medians, xerr=[lows, highs], color=colours, capsize=3)
    for y, f in zip(ys, shown, strict=True):
        if f.target is not None and f.target_on == "ratio":
            ax.plot([f.target.limit, f.target.limit], [y - 0.4, y + 0.4], color="black",
                    linewidth=2)
    ax.axvline(1.0, color="#555555", linestyle=":", linewidth=1)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ratio to the baseline measured in the same run (log scale)\n"
                  "black tick = target; green holds, red does not, grey has no target")
    ax.set_title("cloister benchmark: median paired ratio, bars = min-max over rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
