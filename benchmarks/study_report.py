"""The tables and figures of issue #13's studies that span more than one sweep.

Most studies are one ``dejavu sweep`` each, whose ``sweep.md`` and plots say
everything. Two combine sweeps that share their seeds:

- ``redaction``: study 1 runs one sweep per task (segmentation, depth,
  normals). This prints the table in the seed's layout, a row per redaction and
  a column per task, each cell ``mean`` and its paired difference to the
  ``none`` row, and which redaction wins per task.
- ``band``: study 2 runs band-stop over consecutive bands, low-pass at four
  cut-offs and the baseline as three sweeps. This draws the depth error against
  the band (and against the cut-off) with 95 % intervals, the baseline as a
  line with its interval, and prints each cell's paired difference to the
  baseline.

Usage::

    python benchmarks/study_report.py redaction runs/studies/redaction_{segmentation,depth,normals}
    python benchmarks/study_report.py band runs/studies/band_{bandstop,lowpass,baseline} \\
        --out docs/img/study_band_sweep.png
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dejavu.toolkit.compare import format_difference, paired_difference
from dejavu.toolkit.compare.formatting import _label, _scale_digits
from dejavu.toolkit.sweep import axis_positions, mean_interval


def load(path: Path) -> dict[str, Any]:
    """A sweep's report, from its output folder or its ``sweep.json``."""
    path = path / "sweep.json" if path.is_dir() else path
    return json.loads(path.read_text())


def per_seed(report: Mapping[str, Any], cell: str, metric: str) -> dict[int, float]:
    """``seed -> final metric`` of one cell (finite values only)."""
    out = {}
    for run in report["runs"]:
        value = run["metrics"].get(metric)
        if run["cell"] == cell and value is not None and math.isfinite(value):
            out[int(run["seed"])] = float(value)
    return out


def paired(a: Mapping[int, float], b: Mapping[int, float]) -> dict[str, Any] | None:
    """``b - a`` over the seeds both have, with its interval (None without a pair)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    return paired_difference([a[s] for s in seeds], [b[s] for s in seeds])


def mean_text(metric: str, values: Sequence[float]) -> str:
    scale, d = _scale_digits(metric)
    if not values:
        return "-"
    mean = sum(values) / len(values)
    return f"{scale * mean:.{d}f}"


def redaction_table(reports: Sequence[Mapping[str, Any]]) -> str:
    """Study 1's table: a row per redaction, a column per task (its sweep's main metric)."""
    cells = list(reports[0]["cells"])
    headers = ["redaction"] + [f"{r['main_metric']} (Δ vs none)" for r in reports]
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    wins = []
    for report in reports:
        metric, ref = report["main_metric"], report["reference"]
        sign = 1 if report["metric_direction"] == "max" else -1
        means = {c: report["cells"][c]["metrics"][metric]["mean"] for c in report["cells"]}
        best = max(means, key=lambda c: sign * means[c])
        name = best.split("=", 1)[1]
        if best == ref:
            wins.append(f"- {metric}: the best mean is the reference's, **{name}**")
            continue
        d = paired(per_seed(report, ref, metric), per_seed(report, best, metric))
        verdict = format_difference(d, metric) if d else "no paired seeds"
        wins.append(f"- {metric}: the best mean is **{name}**'s, {verdict} against the reference")
    for cell in cells:
        row = [cell.split("=", 1)[1]]
        for report in reports:
            metric, ref = report["main_metric"], report["reference"]
            mine = per_seed(report, cell, metric)
            text = mean_text(metric, list(mine.values()))
            if cell != ref:
                d = paired(per_seed(report, ref, metric), mine)
                text += f" ({format_difference(d, metric)})" if d else ""
            row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join([*lines, "", *wins])


def band_figure(
    bandstop: Mapping[str, Any],
    lowpass: Mapping[str, Any],
    baseline: Mapping[str, Any],
    out: Path,
) -> str:
    """Study 2's figure (written to ``out``) and table (returned, markdown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = bandstop["main_metric"]
    scale, _ = _scale_digits(metric)
    (base_cell,) = baseline["cells"]
    base = per_seed(baseline, base_cell, metric)
    base_values = list(base.values())
    base_mean = sum(base_values) / len(base_values)
    base_ci = mean_interval(base_values)
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.0), sharey=True)
    rows = ["| redaction | " + _label(metric) + " | Δ vs baseline |", "| --- | --- | --- |"]
    rows.append(f"| none (baseline) | {mean_text(metric, base_values)} | |")
    for ax, report, title in (
        (axes[0], bandstop, "band-stop: band removed"),
        (axes[1], lowpass, "low-pass: cut-off"),
    ):
        (axis,) = report["grid"]
        values = list(report["grid"][axis])
        xs, ticks = axis_positions(values) or (list(range(len(values))), [str(v) for v in values])
        means, errs = [], [[], []]
        for cell, entry in report["cells"].items():
            mine = per_seed(report, cell, metric)
            m = sum(mine.values()) / len(mine)
            ci = mean_interval(list(mine.values()))
            means.append(scale * m)
            errs[0].append(scale * (m - ci[0]) if ci else 0.0)
            errs[1].append(scale * (ci[1] - m) if ci else 0.0)
            d = paired(base, mine)
            name = f"{title.split(':')[0]} {entry['values'][axis]}"
            rows.append(f"| {name} | {mean_text(metric, list(mine.values()))} | "
                        f"{format_difference(d, metric) if d else '-'} |")  # fmt: skip
        ax.errorbar(xs, means, yerr=errs, marker="o", capsize=4, label="DejaVu")
        ax.axhline(scale * base_mean, color="k", lw=1, label="baseline (no DejaVu)")
        if base_ci:
            ax.axhspan(scale * base_ci[0], scale * base_ci[1], color="k", alpha=0.1)
        if ticks:
            ax.set_xticks(xs, ticks, rotation=30, fontsize=8)
        ax.set_xlabel(f"{axis} (normalised radius)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    better = "higher" if bandstop["metric_direction"] == "max" else "lower"
    axes[0].set_ylabel(f"{_label(metric)} ({better} is better)")
    axes[0].legend(fontsize=8)
    n = len(bandstop["seeds"])
    fig.suptitle(f"{metric}: mean and 95 % interval over {n} seeds (shaded: the baseline's)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="study", required=True)
    red = sub.add_parser("redaction", help="study 1: the per-task table")
    red.add_argument("sweeps", type=Path, nargs="+", help="one sweep (folder or json) per task")
    band = sub.add_parser("band", help="study 2: the band figure")
    band.add_argument("bandstop", type=Path)
    band.add_argument("lowpass", type=Path)
    band.add_argument("baseline", type=Path)
    band.add_argument("--out", type=Path, default=Path("docs/img/study_band_sweep.png"))
    args = parser.parse_args()
    if args.study == "redaction":
        print(redaction_table([load(p) for p in args.sweeps]))
    else:
        print(band_figure(load(args.bandstop), load(args.lowpass), load(args.baseline), args.out))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
