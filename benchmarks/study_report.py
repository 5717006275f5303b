"""The tables and figures of issue #13's studies that span more than one sweep.

Most studies are one ``dejavu sweep`` each, whose ``sweep.md`` and plots say
everything. Four combine sweeps that share their seeds:

- ``redaction``: study 1 runs one sweep per task (segmentation, depth,
  normals). This prints the table in the seed's layout, a row per redaction and
  a column per task, each cell ``mean`` and its paired difference to the
  ``none`` row, and which redaction wins per task; the figure draws each
  redaction's paired difference to ``none``, with its 95 % interval, one panel
  per task.
- ``band``: study 2 runs band-stop over consecutive bands, low-pass at four
  cut-offs and the baseline as three sweeps. This draws the depth error against
  the band (and against the cut-off) with 95 % intervals, the baseline as a
  line with its interval, and prints each cell's paired difference to the
  baseline.
- ``crm``: study 3 runs the CRM modes without and with DejaVu-CL, the same
  network without DejaVu, and DejaVu-TS as three sweeps. This prints each
  cell's mean, its paired difference to no DejaVu and (for a ``+ CL`` cell)
  to the same CRM without CL, with the training-step time that
  ``benchmarks/step_time.py`` measured; and DejaVu-TS against its weight-0
  cell; with ``--before``, earlier runs of some cells (kept as run records)
  against the sweep's. The figure draws accuracy against training-step time.
- ``shared_attention``: study 4 runs the plain HRNet widths (baseline) and the
  same widths with the SA block (DejaVu) as two sweeps. This draws both curves
  of accuracy against inference GMACs, with 95 % intervals, and prints each
  network's mean, and each SA network's paired difference to its plain width
  and to the next wider plain network (does the block beat widening?).

Each prints its markdown table, and with ``--md PATH`` also writes it there.

Usage::

    python benchmarks/study_report.py redaction \\
        runs/studies/redaction_{segmentation,depth,normals} \\
        --out docs/img/study_redaction.png
    python benchmarks/study_report.py band runs/studies/band_{bandstop,lowpass,baseline} \\
        --out docs/img/study_band_sweep.png
    python benchmarks/study_report.py shared_attention runs/studies/shared_attention_{base,sa} \\
        --out docs/img/study_shared_attention.png
    python benchmarks/study_report.py crm runs/studies/crm{,_baseline,_ts} \\
        --step-time benchmarks/results/study_crm_step_time.json \\
        --ts-step-time benchmarks/results/study_crm_ts_step_time.json \\
        --out docs/img/study_crm.png --before benchmarks/results/study_runs/crm_cl_before_bn_fix
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dejavu.toolkit.compare import find_run_dirs, format_difference, paired_difference
from dejavu.toolkit.compare.formatting import _label, _scale_digits
from dejavu.toolkit.compare.runs import prunable
from dejavu.toolkit.sweep import axis_positions, mean_interval
from dejavu.toolkit.training.callbacks import read_metrics


def load(path: Path) -> dict[str, Any]:
    """A sweep's report, from its output folder or its ``sweep.json``."""
    path = path / "sweep.json" if path.is_dir() else path
    return json.loads(path.read_text())


def record_per_seed(folder: Path, metric: str) -> dict[str, dict[int, float]]:
    """``cell -> seed -> final metric`` of the runs under ``folder`` (``runs/<cell>/seed<N>``).

    For runs that no sweep collected, e.g. study 3's DejaVu-CL runs made before a fix
    and kept as records (``benchmarks/results/study_runs/crm_cl_before_bn_fix``). A
    run folder is named by its cell, as ``dejavu sweep`` names it. Runs still
    training are left out (their metrics are those of a validation mid-way).
    """
    out: dict[str, dict[int, float]] = {}
    for run_dir in find_run_dirs(folder):
        if prunable(run_dir)[1] is not None:  # refused exactly when not finished
            continue
        seed = run_dir.name.removeprefix("seed")
        if not seed.isdigit():
            raise ValueError(f"{run_dir}: a sweep's run folder is named seed<N>")
        final, _ = read_metrics(run_dir / "metrics.json", missing_ok=True)
        value = final.get(metric)
        if value is not None and math.isfinite(value):
            out.setdefault(run_dir.parent.name, {})[int(seed)] = float(value)
    if not out:
        raise ValueError(f"no finished run with {metric!r} under {folder}")
    return out


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


def _save(fig: Any, out: Path) -> None:
    """Write a figure to ``out`` (its folder made as needed) and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


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


def redaction_figure(reports: Sequence[Mapping[str, Any]], out: Path) -> None:
    """Study 1's figure: each redaction's paired difference to ``none``, a panel per task.

    A forest plot: one row per redaction, its mean paired difference to the
    reference cell with the 95 % t-interval as a bar, and 0 (no difference) as a
    line. Each panel's x label says which way is better for its metric.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(reports[0]["cells"])
    fig, axes = plt.subplots(1, len(reports), figsize=(3.6 * len(reports), 0.45 * len(cells) + 1.6),
                             sharey=True, squeeze=False)  # fmt: skip
    for ax, report in zip(axes[0], reports, strict=True):
        metric, ref = report["main_metric"], report["reference"]
        scale, _ = _scale_digits(metric)
        ref_runs = per_seed(report, ref, metric)
        for y, cell in enumerate(cells):
            if cell == ref:
                ax.plot([0.0], [y], marker="D", color="k")
                continue
            d = paired(ref_runs, per_seed(report, cell, metric))
            if d is None:  # no seed finished in both cells: nothing to draw
                continue
            low, high = (scale * v for v in d["ci"])
            effect = not low <= 0.0 <= high
            ax.errorbar([scale * d["mean"]], [y], xerr=[[scale * d["mean"] - low],
                        [high - scale * d["mean"]]], marker="o", capsize=4,
                        color="C3" if effect else "C0")  # fmt: skip
        ax.axvline(0.0, color="k", lw=1)
        better = "higher" if report["metric_direction"] == "max" else "lower"
        ax.set_xlabel(f"Δ {_label(metric)} vs none\n({better} is better)", fontsize=8)
        ax.grid(alpha=0.3, axis="x")
    axes[0][0].set_yticks(range(len(cells)), [c.split("=", 1)[1] for c in cells], fontsize=8)
    axes[0][0].invert_yaxis()
    n = len(reports[0]["seeds"])
    fig.suptitle(f"paired difference to no redaction, mean and 95 % interval over {n} seeds\n"
                 "(red: the interval excludes 0)", fontsize=9)  # fmt: skip
    _save(fig, out)


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
    _save(fig, out)
    return "\n".join(rows)


def crm_label(values: Mapping[str, Any]) -> str:
    """A study-3 cell's name as the seed writes it: ``CRM-R (4 groups) + CL``."""
    crm = values.get("dejavu.crm")
    if not isinstance(crm, Mapping):
        raise ValueError(f"a CRM study cell needs a dejavu.crm axis; grid axes: {sorted(values)}")
    kind = crm.get("kind", "forward")
    if kind == "recursive":
        groups = crm.get("num_groups")
        name = f"CRM-R ({groups} group{'s' if groups != 1 else ''})"
    elif kind == "zero":
        name = f"CRM-0 ({crm.get('tile')} x {crm.get('tile')} tiles)"
    else:
        name = {"forward": "CRM-F"}.get(kind, f"CRM {kind}")
    return name + (" + CL" if float(values.get("dejavu.cyclic_weight", 0.0)) > 0 else "")


def _step_ratios(step_time: Mapping[str, Any] | None) -> dict[str, float]:
    """cell name -> step-time ratio to the reference of a ``step_time.py`` report."""
    if step_time is None:
        return {}
    return {name: float(cell["ratio"]) for name, cell in step_time["cells"].items()}


def crm_report(
    crm: Mapping[str, Any],
    baseline: Mapping[str, Any],
    ts: Mapping[str, Any],
    out: Path,
    *,
    step_time: Mapping[str, Any] | None = None,
    ts_step_time: Mapping[str, Any] | None = None,
    before: Mapping[str, Mapping[int, float]] | None = None,
) -> str:
    """Study 3's figure (written to ``out``) and tables (returned, markdown).

    ``crm`` holds the CRM modes without and with DejaVu-CL, ``baseline`` the same
    network without DejaVu, ``ts`` DejaVu-TS over ``dejavu.text.weight`` (its first
    cell the weight-0 reference). ``step_time`` and ``ts_step_time`` are
    ``benchmarks/step_time.py`` reports of the same cells (the first with the
    baseline as its reference); without them the step-time column is ``-`` and
    the figure has no training-cost axis (cells are spread evenly instead).
    Each CRM cell is paired by seed with the baseline, and each ``+ CL`` cell
    also with the same CRM without CL. ``before`` (:func:`record_per_seed`) holds
    earlier runs of some of ``crm``'s cells (by cell name, per seed); a third
    table pairs each with the cell's runs in ``crm``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = crm["main_metric"]
    scale, _ = _scale_digits(metric)
    (base_cell,) = baseline["cells"]
    base = per_seed(baseline, base_cell, metric)
    ratios = _step_ratios(step_time)
    base_ratio = next((r for n, r in ratios.items() if "dejavu.enabled=false" in n), None)
    rows = [
        f"| cell | {_label(metric)} | Δ vs no DejaVu | Δ from CL | step time (x no DejaVu) |",
        "| --- | ---: | --- | --- | ---: |",
        f"| no DejaVu | {mean_text(metric, list(base.values()))} | | | "
        f"{f'{base_ratio:.2f}' if base_ratio is not None else '-'} |",
    ]
    without_cl: dict[str, dict[int, float]] = {}
    points = []
    for cell, entry in crm["cells"].items():
        label = crm_label(entry["values"])
        mine = per_seed(crm, cell, metric)
        d = paired(base, mine)
        cl = "-"
        if label.endswith(" + CL"):
            plain = without_cl.get(label.removesuffix(" + CL"))
            if plain is not None and (dc := paired(plain, mine)):
                cl = format_difference(dc, metric)
        else:
            without_cl[label] = mine
        ratio = ratios.get(cell)
        rows.append(f"| {label} | {mean_text(metric, list(mine.values()))} | "
                    f"{format_difference(d, metric) if d else '-'} | {cl} | "
                    f"{f'{ratio:.2f}' if ratio is not None else '-'} |")  # fmt: skip
        points.append((label, ratio, list(mine.values())))
    ts_ratios = _step_ratios(ts_step_time)
    (axis,) = ts["grid"]
    ts_cells = list(ts["cells"])
    ts_ref = per_seed(ts, ts_cells[0], metric)
    first = ts["cells"][ts_cells[0]]["values"][axis]
    ts_rows = [
        f"| DejaVu-TS ({axis}) | {_label(metric)} | Δ vs {first} | Δ vs no DejaVu "
        f"| step time (x {first}) |",
        "| --- | ---: | --- | --- | ---: |",
    ]
    for cell in ts_cells:
        mine = per_seed(ts, cell, metric)
        d = paired(ts_ref, mine) if cell != ts_cells[0] else None
        db = paired(base, mine)
        ratio = ts_ratios.get(cell)
        ts_rows.append(f"| {ts['cells'][cell]['values'][axis]} | "
                       f"{mean_text(metric, list(mine.values()))} | "
                       f"{format_difference(d, metric) if d else ''} | "
                       f"{format_difference(db, metric) if db else '-'} | "
                       f"{f'{ratio:.2f}' if ratio is not None else '-'} |")  # fmt: skip

    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    base_values = list(base.values())
    base_mean = sum(base_values) / len(base_values)
    ax.axhline(scale * base_mean, color="k", lw=1, label="no DejaVu")
    if (base_ci := mean_interval(base_values)) is not None:
        ax.axhspan(scale * base_ci[0], scale * base_ci[1], color="k", alpha=0.1)
    for i, (label, ratio, values) in enumerate(points):
        m = sum(values) / len(values)
        ci = mean_interval(values)
        err = [[scale * (m - ci[0])], [scale * (ci[1] - m)]] if ci else None
        x = ratio if ratios else float(i)
        with_cl = label.endswith(" + CL")
        # One legend entry per CRM (its colour) rather than a label per point:
        # the points of cheap cells sit too close for labels not to overlap.
        ax.errorbar([x], [scale * m], yerr=err, capsize=4, marker="s" if with_cl else "o",
                    color=f"C{i // 2 % 10}", label=None if with_cl else label)  # fmt: skip
    better = "higher" if crm["metric_direction"] == "max" else "lower"
    ax.set_ylabel(f"{_label(metric)} ({better} is better)")
    ax.set_xlabel("training-step time (x no DejaVu)" if ratios else "cell")
    if not ratios:
        ax.set_xticks([])
    n = len(crm["seeds"])
    ax.set_title(f"{metric}: mean and 95 % interval over {n} seeds "
                 "(shaded: no DejaVu's; squares: + CL)", fontsize=9)  # fmt: skip
    ax.margins(x=0.1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    _save(fig, out)
    tables = [*rows, "", *ts_rows]
    if before:
        tables += ["", f"| cell | before: {_label(metric)} | now | Δ now - before |",
                   "| --- | ---: | ---: | --- |"]  # fmt: skip
        for cell, old in before.items():
            if cell not in crm["cells"]:
                raise ValueError(f"earlier runs of {cell!r}, which is not a cell of the sweep")
            now = per_seed(crm, cell, metric)
            d = paired(old, now)
            tables.append(f"| {crm_label(crm['cells'][cell]['values'])} | "
                          f"{mean_text(metric, list(old.values()))} | "
                          f"{mean_text(metric, list(now.values()))} | "
                          f"{format_difference(d, metric) if d else '-'} |")  # fmt: skip
    return "\n".join(tables)


def cell_model(report: Mapping[str, Any], cell: str) -> str:
    """The ``model.name`` of a cell: study 4's sweeps have it as a grid axis."""
    values = report["cells"][cell]["values"]
    if "model.name" not in values:
        raise ValueError(f"cell {cell!r} has no model.name axis; grid axes: {sorted(values)}")
    return str(values["model.name"])


def shared_attention_figure(base: Mapping[str, Any], sa: Mapping[str, Any], out: Path) -> str:
    """Study 4's figure (written to ``out``) and table (returned, markdown).

    ``base`` holds the plain networks, ``sa`` the ``sa_<plain name>`` networks; an
    SA network is paired with its plain namesake and with the next wider plain
    network (by GMACs), over the seeds both have.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = base["main_metric"]
    scale, _ = _scale_digits(metric)
    curves: dict[str, list[tuple[float, str, dict[int, float]]]] = {}
    for label, report in (("scaling the base (baseline)", base), ("DejaVu-SA", sa)):
        points = []
        for cell, entry in report["cells"].items():
            if entry.get("gmacs") is None:
                raise ValueError(f"cell {cell!r} has no GMACs in its sweep.json")
            points.append((float(entry["gmacs"]), cell_model(report, cell),
                           per_seed(report, cell, metric)))  # fmt: skip
        curves[label] = sorted(points, key=lambda p: p[0])
    plain = {name: (g, runs) for g, name, runs in curves["scaling the base (baseline)"]}
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    pairs: dict[str, list[tuple[float, float]]] = {}
    rows = [f"| network | GMACs | {_label(metric)} | Δ vs same width | Δ vs next wider |",
            "| --- | ---: | ---: | --- | --- |"]  # fmt: skip
    for label, points in curves.items():
        xs, ys, errs = [], [], [[], []]
        for gmacs, name, runs in points:
            m = sum(runs.values()) / len(runs) if runs else math.nan
            ci = mean_interval(list(runs.values()))
            xs.append(gmacs)
            ys.append(scale * m)
            errs[0].append(scale * (m - ci[0]) if ci else 0.0)
            errs[1].append(scale * (ci[1] - m) if ci else 0.0)
            same = wider = "-"
            if label == "DejaVu-SA":
                own = plain.get(name.removeprefix("sa_"))
                if own is not None and (d := paired(own[1], runs)):
                    same = format_difference(d, metric)
                bigger = [(g, r) for g, r in plain.values() if g > gmacs]
                if bigger and (d := paired(min(bigger, key=lambda p: p[0])[1], runs)):
                    wider = format_difference(d, metric)
            rows.append(f"| {name} | {gmacs:.3f} | {mean_text(metric, list(runs.values()))} "
                        f"| {same} | {wider} |")  # fmt: skip
        ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=4, label=label)
        for x, y, up, (_, name, _) in zip(xs, ys, errs[1], points, strict=True):
            pairs.setdefault(name.removeprefix("sa_"), []).append((x, y + up))
    # One label per width, above the higher interval of its pair: a label per point
    # overlapped the neighbouring curve's error bars where the two curves run close.
    for name, tops in pairs.items():
        x = sum(t[0] for t in tops) / len(tops)
        ax.annotate(name, (x, max(t[1] for t in tops)), textcoords="offset points",
                    xytext=(0, 4), ha="center", va="bottom", fontsize=7)  # fmt: skip
    ax.margins(y=0.1)
    better = "higher" if base["metric_direction"] == "max" else "lower"
    ax.set_xlabel("inference GMACs (one image)")
    ax.set_ylabel(f"{_label(metric)} ({better} is better)")
    ax.set_title(f"{metric}: mean and 95 % interval over {len(base['seeds'])} seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, out)
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="study", required=True)
    red = sub.add_parser("redaction", help="study 1: the per-task table and figure")
    red.add_argument("sweeps", type=Path, nargs="+", help="one sweep (folder or json) per task")
    red.add_argument("--out", type=Path, default=Path("docs/img/study_redaction.png"))
    band = sub.add_parser("band", help="study 2: the band figure")
    band.add_argument("bandstop", type=Path)
    band.add_argument("lowpass", type=Path)
    band.add_argument("baseline", type=Path)
    band.add_argument("--out", type=Path, default=Path("docs/img/study_band_sweep.png"))
    sa = sub.add_parser("shared_attention", help="study 4: accuracy against GMACs, two curves")
    sa.add_argument("base", type=Path, help="the plain networks' sweep (folder or json)")
    sa.add_argument("sa", type=Path, help="the SA networks' sweep (folder or json)")
    sa.add_argument("--out", type=Path, default=Path("docs/img/study_shared_attention.png"))
    crm = sub.add_parser("crm", help="study 3: CRM modes, CL and TS against no DejaVu")
    crm.add_argument("crm", type=Path, help="the CRM modes' sweep, without and with CL")
    crm.add_argument("baseline", type=Path, help="the same network without DejaVu")
    crm.add_argument("ts", type=Path, help="the DejaVu-TS sweep over dejavu.text.weight")
    crm.add_argument("--step-time", type=Path, help="benchmarks/step_time.py JSON of the CRM cells")
    crm.add_argument(
        "--ts-step-time", type=Path, help="benchmarks/step_time.py JSON of the TS cells"
    )
    crm.add_argument(
        "--before",
        type=Path,
        help="run records of earlier runs of some CRM cells (runs/<cell>/seed<N>), "
        "paired with the sweep's runs of the same cells",
    )
    crm.add_argument("--out", type=Path, default=Path("docs/img/study_crm.png"))
    for p in (red, band, sa, crm):
        p.add_argument("--md", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args()
    if args.study == "redaction":
        reports = [load(p) for p in args.sweeps]
        table = redaction_table(reports)
        redaction_figure(reports, args.out)
    elif args.study == "band":
        table = band_figure(load(args.bandstop), load(args.lowpass), load(args.baseline), args.out)
    elif args.study == "crm":
        crm_sweep = load(args.crm)
        before = record_per_seed(args.before, crm_sweep["main_metric"]) if args.before else None
        table = crm_report(
            crm_sweep,
            load(args.baseline),
            load(args.ts),
            args.out,
            step_time=load(args.step_time) if args.step_time else None,
            ts_step_time=load(args.ts_step_time) if args.ts_step_time else None,
            before=before,
        )
    else:
        table = shared_attention_figure(load(args.base), load(args.sa), args.out)
    print(table)
    print(f"\nwrote {args.out}")
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(table + "\n")
        print(f"wrote {args.md}")


if __name__ == "__main__":
    main()
