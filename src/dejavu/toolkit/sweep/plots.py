"""A sweep's plots: the main metric against each numeric grid axis, and against compute.

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

__all__ = ["axis_positions", "compute_axes", "sweep_plots"]


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


def _error_bars(points: Sequence[tuple[Any, ...]], scale: float) -> list[list[float]]:
    """Lower and upper error-bar lengths of ``(x, mean, interval or None, ...)`` points."""
    return [
        [scale * (p[1] - p[2][0]) if p[2] else 0.0 for p in points],
        [scale * (p[2][1] - p[1]) if p[2] else 0.0 for p in points],
    ]


def _finish(fig: Any, ax: Any, report: Mapping[str, Any], xlabel: str, path: Path) -> Path:
    """Label, title and legend a plot of the main metric against ``xlabel``, save it to ``path``."""
    import matplotlib.pyplot as plt

    metric = report["main_metric"]
    better = "higher" if report["metric_direction"] == "max" else "lower"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{_label(metric)} ({better} is better)")
    ax.set_title(
        f"{metric} vs {xlabel}: mean and 95 % interval over {len(report['seeds'])} seed(s)",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def compute_axes(report: Mapping[str, Any]) -> list[str]:
    """The grid axes that change a cell's inference GMACs (e.g. ``model.name``).

    An axis changes them when two cells that differ in that axis alone differ
    in GMACs; the other axes (``dejavu.enabled``: DejaVu adds no inference cost)
    do not.

    Example:
        >>> cells = {
        ...     "a": {"values": {"model": "s", "dejavu": False}, "gmacs": 1.0},
        ...     "b": {"values": {"model": "s", "dejavu": True}, "gmacs": 1.0},
        ...     "c": {"values": {"model": "l", "dejavu": False}, "gmacs": 3.0},
        ...     "d": {"values": {"model": "l", "dejavu": True}, "gmacs": 3.0},
        ... }
        >>> compute_axes({"grid": {"model": ["s", "l"], "dejavu": [False, True]}, "cells": cells})
        ['model']
    """
    cells = list(report["cells"].values())
    changing = []
    for axis in report["grid"]:
        groups: dict[str, set[float]] = {}
        for entry in cells:
            if entry.get("gmacs") is None:
                continue
            rest = repr(sorted((k, repr(v)) for k, v in entry["values"].items() if k != axis))
            groups.setdefault(rest, set()).add(round(float(entry["gmacs"]), 9))
        if any(len(g) > 1 for g in groups.values()):
            changing.append(axis)
    return changing


def _gmacs_plot(report: Mapping[str, Any], out_dir: str | Path) -> Path | None:
    """``sweep_gmacs.png``: the main metric against inference GMACs, one line per
    value of the axes that leave the GMACs unchanged, each point labelled with
    the values of the axes that change them. None when every cell costs the same."""
    import matplotlib.pyplot as plt

    cells = report["cells"]
    if len({round(float(c["gmacs"]), 9) for c in cells.values() if c.get("gmacs")}) < 2:
        return None
    metric = report["main_metric"]
    scale, _ = _scale_digits(metric)
    compute = compute_axes(report)
    lines: dict[str, list[tuple[float, float, list[float] | None, str]]] = {}
    for entry in cells.values():
        stats = entry["metrics"].get(metric)
        if entry.get("gmacs") is None or stats is None:
            continue
        if not all(math.isfinite(v) for v in stats["values"]):
            continue
        key = ", ".join(f"{k}={_plain(v)}" for k, v in entry["values"].items() if k not in compute)
        label = ", ".join(_plain(entry["values"][k]) for k in compute)
        point = (float(entry["gmacs"]), stats["mean"], mean_interval(stats["values"]), label)
        lines.setdefault(key, []).append(point)
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for key, points in lines.items():
        points.sort(key=lambda p: p[0])
        ys = [scale * p[1] for p in points]
        err = _error_bars(points, scale)
        ax.errorbar([p[0] for p in points], ys, yerr=err, marker="o", capsize=4, label=key or None)
        for p, y in zip(points, ys, strict=True):
            ax.annotate(p[3], (p[0], y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    return _finish(fig, ax, report, "inference GMACs", Path(out_dir) / "sweep_gmacs.png")


def sweep_plots(report: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """One ``sweep_<axis>.png`` per numeric grid axis: the main metric against the axis;
    and ``sweep_gmacs.png`` (the metric against inference GMACs) when the cells' costs
    differ, e.g. over ``model.name`` (an accuracy-for-compute trade-off).

    A numeric axis holds numbers or ``[lo, hi]`` intervals (:func:`axis_positions`).
    Each point is a cell's mean over the seeds with its 95 % t-interval
    (:func:`mean_interval`; no bar for one seed); cells that share the values
    of the other axes form one line. An axis of numbers whose positive values
    span more than a factor 100 gets a log scale.

    Returns:
        The files written (none when no axis is numeric and every cell costs the same).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = report["main_metric"]
    scale, _ = _scale_digits(metric)
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
            err = _error_bars(points, scale)
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label=key or None)
        if ticks is not None:
            ax.set_xticks(xs_of, ticks, rotation=30, fontsize=8)
        elif min(xs_of) > 0 and max(xs_of) / min(xs_of) > 100:
            ax.set_xscale("log")
        path = Path(out_dir) / f"sweep_{_UNSAFE.sub('_', axis)}.png"
        written.append(_finish(fig, ax, report, axis, path))
    gmacs = _gmacs_plot(report, out_dir)
    if gmacs is not None:
        written.append(gmacs)
    return written
