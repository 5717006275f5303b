"""A sweep's plots: for each numeric grid axis, the main metric against the axis.

Example:
    >>> axis_positions([[0.0, 0.1], [0.2, 0.4]])[1]
    ['0-0.1', '0.2-0.4']
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dejavu.toolkit.compare.formatting import _label, _scale_digits
from dejavu.toolkit.sweep.grid import _UNSAFE
from dejavu.toolkit.sweep.report import _plain, mean_interval

__all__ = ["axis_positions", "sweep_plots"]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def axis_positions(values: Sequence[Any]) -> tuple[list[float], list[str] | None] | None:
    """Where a grid axis's values go on a plot's x axis, and their tick labels.

    Numbers go at themselves (no labels); ``[lo, hi]`` intervals of numbers (a
    spectral band) at their midpoints, labelled ``lo-hi``; any other axis is
    not numeric (None).

    Example:
        >>> axis_positions([0.5, 2])
        ([0.5, 2.0], None)
        >>> axis_positions([[0, 0.1], [0.1, 0.2]])
        ([0.05, 0.15000000000000002], ['0-0.1', '0.1-0.2'])
        >>> axis_positions([True, False]) is None
        True
    """
    if values and all(_number(v) for v in values):
        return [float(v) for v in values], None
    pairs = [v for v in values if isinstance(v, list | tuple) and len(v) == 2]
    if values and len(pairs) == len(values) and all(_number(x) for v in pairs for x in v):
        return [(float(lo) + float(hi)) / 2 for lo, hi in pairs], [
            f"{lo:g}-{hi:g}" for lo, hi in pairs
        ]
    return None


def sweep_plots(report: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """One ``sweep_<axis>.png`` per numeric grid axis: the main metric against the axis.

    A numeric axis holds numbers or ``[lo, hi]`` intervals (:func:`axis_positions`).
    Each point is a cell's mean over the seeds with its 95 % t-interval
    (:func:`mean_interval`; no bar for one seed); cells that share the values
    of the other axes form one line. An axis of numbers whose positive values
    span more than a factor 100 gets a log scale.

    Returns:
        The files written (none when no axis is numeric).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = report["main_metric"]
    scale, _ = _scale_digits(metric)
    better = "higher" if report["metric_direction"] == "max" else "lower"
    cells = report["cells"]
    written: list[Path] = []
    for axis in report["grid"]:
        values = list(report["grid"][axis])
        placed = axis_positions(values)
        if placed is None:
            continue
        xs_of, ticks = placed
        others = [k for k in report["grid"] if k != axis]
        lines: dict[str, list[tuple[float, float, list[float] | None]]] = {}
        for entry in cells.values():
            stats = entry["metrics"].get(metric)
            if stats is None or not all(math.isfinite(v) for v in stats["values"]):
                continue
            key = ", ".join(f"{k}={_plain(entry['values'][k])}" for k in others)
            ci = mean_interval(stats["values"])
            x = xs_of[values.index(entry["values"][axis])]
            lines.setdefault(key, []).append((x, stats["mean"], ci))
        if not lines:
            continue
        fig, ax = plt.subplots(figsize=(6.0, 4.0))
        for key, points in lines.items():
            points.sort(key=lambda p: p[0])
            xs = [p[0] for p in points]
            ys = [scale * p[1] for p in points]
            err = [
                [scale * (p[1] - p[2][0]) if p[2] else 0.0 for p in points],
                [scale * (p[2][1] - p[1]) if p[2] else 0.0 for p in points],
            ]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label=key or None)
        if ticks is not None:
            ax.set_xticks(xs_of, ticks, rotation=30, fontsize=8)
        elif min(xs_of) > 0 and max(xs_of) / min(xs_of) > 100:
            ax.set_xscale("log")
        ax.set_xlabel(axis)
        ax.set_ylabel(f"{_label(metric)} ({better} is better)")
        ax.set_title(
            f"{metric} vs {axis}: mean and 95 % interval over {len(report['seeds'])} seed(s)",
            fontsize=9,
        )
        ax.grid(alpha=0.3)
        if any(lines):
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = Path(out_dir) / f"sweep_{_UNSAFE.sub('_', axis)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
