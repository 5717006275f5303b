"""What a sweep reports: ``sweep.json`` (every run, per-cell summaries, paired statistics),
``sweep.md`` and the table ``dejavu sweep`` prints.

The per-cell statistics are compare's (:mod:`dejavu.toolkit.compare`): the
report seen with its cells as variants (:func:`_view`) is a ``compare.json``
report, so paired differences, verdicts and number formats are the same.

Example:
    >>> _finite({"a": [1.0, float("nan")]})
    {'a': [1.0, None]}
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from dejavu.toolkit import compare
from dejavu.toolkit.compare.formatting import _fmt, _fmt_p, _label
from dejavu.toolkit.compare.report import _final_metrics, _summary
from dejavu.toolkit.compare.tables import _md_table
from dejavu.toolkit.sweep.plan import SweepPlan, SweepRun

__all__ = ["mean_interval", "sweep_markdown", "sweep_table"]


def _report(
    plan: SweepPlan, results: Mapping[SweepRun, Any], status: Mapping[SweepRun, str]
) -> dict[str, Any]:
    """Per-run records, per-cell summaries and the paired statistics."""
    runs: list[dict[str, Any]] = []
    cells: dict[str, Any] = {}
    class_names = None
    for cell in plan.cells:
        mine = [r for r in plan.runs if r.cell.name == cell.name]
        # The inference network does not depend on the seed: its cost is measured once.
        cost = compare.inference_cost(mine[0].cfg, results[mine[0]].last_checkpoint)
        class_names = class_names or cost["class_names"]
        per_seed = []
        for run in mine:
            result = results[run]
            metrics = _final_metrics(result.metrics)
            per_seed.append(metrics)
            runs.append(
                {
                    "cell": cell.name,
                    "overrides": list(cell.overrides),
                    "seed": run.seed,
                    "metrics": metrics,
                    "params": cost["params"],
                    "gmacs": cost["gmacs"],
                    "train_time_s": float(result.train_time_s),
                    "status": status[run],
                    "run_dir": str(run.run_dir),
                    "history": [dict(h) for h in result.history],
                }
            )
        cells[cell.name] = {
            "overrides": list(cell.overrides),
            "values": dict(cell.values),
            "metrics": compare.summarize_metrics(per_seed),
            "params": cost["params"],
            "gmacs": cost["gmacs"],
            "shared_attention": cost["shared_attention"],
            "train_time_s": [float(results[r].train_time_s) for r in mine],
            "checkpoints": [_path_or_none(results[r].last_checkpoint) for r in mine],
        }
    report: dict[str, Any] = {
        "config_path": str(plan.config),
        "config": dict(plan.base_config),
        "overrides": list(plan.overrides),
        "grid": {a.key: list(a.values) for a in plan.axes},
        "seeds": list(plan.seeds),
        "reference": plan.reference,
        "main_metric": plan.metric,
        "metric_direction": plan.direction,
        "cells": cells,
        "runs": runs,
        "machine": compare.machine_info(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "class_names": class_names,
    }
    view = _view(report)
    if plan.metric not in cells[plan.reference]["metrics"]:  # e.g. no validation: fall back
        report["main_metric"] = compare.main_metric({**view, "main_metric": None})
    report["paired"] = compare.paired_section(view, plan.reference)
    return report


def _path_or_none(path: Path | None) -> str | None:
    # None: a pruned run's checkpoint (compare.prune_run), which is gone.
    return None if path is None else str(path)


def _view(report: Mapping[str, Any]) -> dict[str, Any]:
    """The report in ``compare.json``'s shape (cells as variants), for compare's functions."""
    view: dict[str, Any] = {
        "variants": list(report["cells"]),
        "seeds": report["seeds"],
        "reference": report["reference"],
        "main_metric": report["main_metric"],
        "config": report["config"],
    }
    if "paired" in report:
        view["paired"] = report["paired"]
    for name, entry in report["cells"].items():
        view[name] = entry
    return view


def _finite(data: Any) -> Any:
    # JSON has no NaN: a metric without a value (a class absent from val) is written as null.
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, Mapping):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> list[float] | None:
    """The t-interval of the mean of ``values`` (None for fewer than two values).

    The interval of :func:`~dejavu.toolkit.compare.paired_difference` against 0,
    so that every interval of a report follows one convention.

    Example:
        >>> [round(x, 4) for x in mean_interval([1.0, 2.0, 3.0])]
        [-0.4841, 4.4841]
    """
    return compare.paired_difference([0.0] * len(values), values, confidence)["ci"]


def _plain(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def sweep_markdown(report: Mapping[str, Any]) -> str:
    """``sweep.md``: the main metric per cell with its paired difference vs the reference,
    every final metric per cell (mean ± std), the paired differences of every metric,
    inference cost and training time, and where it ran."""
    view = _view(report)
    metric, ref = report["main_metric"], report["reference"]
    cells = list(report["cells"])
    label = _label(metric)
    better = "higher" if report["metric_direction"] == "max" else "lower"
    grid = "; ".join(
        f"`{key}` = {', '.join(_plain(v) for v in values)}"
        for key, values in report["grid"].items()
    )
    common = " ".join(f"`{o}`" for o in report["overrides"]) or "(none)"
    lines = [
        f"# Sweep: {Path(report['config_path']).name}",
        "",
        f"Config `{report['config_path']}`, common overrides {common}.",
        f"Grid: {grid} ({len(cells)} cells x {len(report['seeds'])} seeds). "
        f"Seeds: {', '.join(map(str, report['seeds']))}; run s of every cell uses seed s, so "
        "cells are compared seed by seed.",
        f"Main metric: **{metric}** ({better} is better). Reference cell: **{ref}**. "
        "Values are final validation metrics; metrics marked (%) are in percent "
        "(differences in percentage points).",
        "",
        f"## {label}",
        "",
        compare.EFFECT_LEGEND,
        "",
    ]
    lines += _md_table(_main_headers(report), _main_rows(report), left=1)

    names = sorted(set().union(*(_summary(c["metrics"]) for c in report["cells"].values())))
    rows = []
    for name in cells:
        stats = report["cells"][name]["metrics"]
        rows.append([name, *(_mean_std(m, stats.get(m))[0] for m in names)])
    lines += [
        "",
        "## Every final metric (mean ± std over seeds)",
        "",
        *_md_table(["cell", *(_label(m) for m in names)], rows),
    ]
    section = compare.paired_markdown(view)
    if section:
        lines += ["", "## " + section.rstrip("\n")]
    rows = []
    for name in cells:
        entry = report["cells"][name]
        times = ", ".join(f"{t:.1f}" for t in entry["train_time_s"])
        rows.append([name, f"{entry['params']:,}", f"{entry['gmacs']:.4f}", times])
    lines += [
        "",
        "## Inference cost and training time",
        "",
        *_md_table(["cell", "params", "GMACs", "training time per seed (s)"], rows),
        "",
        "Cells and their overrides:",
        "",
    ]
    for name in cells:
        overrides = " ".join(f"`{o}`" for o in report["cells"][name]["overrides"])
        lines.append(f"- **{name}**: {overrides}")
    machine = report["machine"]
    plots = report["files"].get("plots", [])
    if plots:
        lines += ["", "Plots: " + ", ".join(f"`{Path(p).name}`" for p in plots) + "."]
    lines += [
        "",
        f"Runs: {report['launcher']} launcher, {report['jobs']} at a time. Machine: "
        f"{compare.machine_text(machine)}; date {report['date']}.",
        "",
    ]
    return "\n".join(lines)


def _mean_std(name: str, stats: Mapping[str, Any] | None) -> tuple[str, str]:
    # compare's format, with "-" for a metric without a value (null in sweep.json).
    if not stats or stats.get("mean") is None or stats.get("std") is None:
        return "-", "-"
    if any(v is None for v in stats["values"]):
        return "-", ", ".join("-" if v is None else f"{v:.4f}" for v in stats["values"])
    return _fmt(name, stats)


def _main_rows(report: Mapping[str, Any]) -> list[list[str]]:
    """Per cell: mean ± std, per seed, difference vs the reference [95 % CI], p, verdict."""
    metric, ref = report["main_metric"], report["reference"]
    rows = []
    for name, entry in report["cells"].items():
        mean_std, per_seed = _mean_std(metric, entry["metrics"].get(metric))
        if name == ref:
            diff, p, verdict = "(reference)", "", ""
        else:
            pd = report["paired"].get(name, {}).get(metric)
            diff = compare.format_difference(pd, metric) if pd else "-"
            p = _fmt_p(pd.get("p_value")) if pd else "-"
            verdict = compare.effect_label(pd) if pd else "-"
        rows.append([name, mean_std, per_seed, diff, p, verdict])
    return rows


def _main_headers(report: Mapping[str, Any]) -> list[str]:
    ref = report["reference"]
    return [
        "cell",
        "mean ± std",
        "per seed",
        f"difference vs {ref} [95 % CI]",
        "p (paired t-test)",
        "verdict",
    ]


def sweep_table(report: Mapping[str, Any]) -> Table:
    """The main metric per cell as a rich table (what ``dejavu sweep`` prints)."""
    metric = report["main_metric"]
    table = Table(
        title=f"{_label(metric)}: final value over {len(report['seeds'])} seed(s)",
        caption=compare.EFFECT_LEGEND,
    )
    for i, header in enumerate(_main_headers(report)):
        table.add_column(header, justify="left" if i == 0 else "right", overflow="fold")
    for row in _main_rows(report):
        table.add_row(*row)
    return table
