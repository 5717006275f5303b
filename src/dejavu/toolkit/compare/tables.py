"""A report as tables: the rich table ``dejavu compare`` prints and ``compare.md``.

Every table shows a variant's metrics as mean ± std with the per-seed
values, and each other variant's paired difference to the reference
[95 % CI] (:data:`~dejavu.toolkit.compare.formatting.EFFECT_LEGEND`).

Example:
    >>> print("\\n".join(_md_table(["metric", "value"], [["a", "1.0"]])))
    | metric | value |
    |---|---:|
    | a | 1.0 |
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from rich.table import Table

from dejavu.toolkit.compare.formatting import (
    EFFECT_LEGEND,
    _fmt,
    _fmt_p,
    _label,
    _scale_digits,
    format_difference,
)
from dejavu.toolkit.compare.machine import machine_text
from dejavu.toolkit.compare.report import (
    _by_seed,
    _paired,
    _summary,
    _variant_seeds,
    class_names,
    main_metric,
    reference_variant,
)
from dejavu.toolkit.compare.stats import effect_label

__all__ = [
    "compare_markdown",
    "compare_table",
    "paired_markdown",
    "per_class_markdown",
    "per_seed_markdown",
]


def _others(report: Mapping[str, Any]) -> tuple[str, list[str]]:
    ref = reference_variant(report)
    return ref, [v for v in report["variants"] if v != ref]


def _diff_header(report: Mapping[str, Any], variant: str) -> str:
    ref, others = _others(report)
    head = f"difference vs {ref} [95 % CI]"
    return head if len(others) == 1 else f"{variant}: {head}"


def _rows(report: Mapping[str, Any]) -> list[list[str]]:
    variants = report["variants"]
    _, others = _others(report)
    paired = _paired(report) if others else {}
    names = sorted(set().union(*(_summary(report[v]["metrics"]) for v in variants)))
    rows = []
    for name in names:
        row = [_label(name)]
        for v in variants:
            st = report[v]["metrics"].get(name)
            row.extend(_fmt(name, st) if st else ("-", "-"))
        for v in others:
            pd = paired.get(v, {}).get(name)
            row.append(format_difference(pd, name) if pd else "-")
        rows.append(row)
    cost_note = "equal" if report["inference_cost_equal"] else "DIFFERENT (shared attention)"
    tail = [""] * len(others)
    rows.append(["params", *[x for v in variants for x in (f"{report[v]['params']:,}", "")], *tail])
    rows.append(["GMACs", *[x for v in variants for x in (f"{report[v]['gmacs']:.4f}", "")], *tail])
    rows.append(["inference cost", *[x for _ in variants for x in (cost_note, "")], *tail])
    return rows


def _headers(report: Mapping[str, Any]) -> list[str]:
    variants = report["variants"]
    _, others = _others(report)
    headers = ["metric", *[h for v in variants for h in (f"{v} mean ± std", "per seed")]]
    headers.extend(_diff_header(report, v) for v in others)
    return headers


def _md_table(headers: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> list[str]:
    # The first `left` columns are text (left-aligned), the others numbers.
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(["---"] * left + ["---:"] * (len(headers) - left)) + "|",
    ]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def compare_table(report: Mapping[str, Any]) -> Table:
    """The report as a rich table: per variant mean ± std and per-seed values, then
    one paired difference vs the reference [95 % CI] per other variant (legend below)."""
    n = len(report["seeds"])
    _, others = _others(report)
    table = Table(
        title=f"final validation metrics over {n} seed(s): {', '.join(map(str, report['seeds']))}",
        caption=EFFECT_LEGEND if others else None,
    )
    for i, header in enumerate(_headers(report)):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in _rows(report):
        table.add_row(*row)
    return table


def paired_markdown(report: Mapping[str, Any]) -> str:
    """Markdown table of the paired differences of every summary metric vs the reference.

    One row per metric and variant: the difference [95 % CI] (n), the paired
    t-test's p-value, the verdict (``effect`` / ``no measurable effect``,
    :func:`effect_label`) and the seeds left unpaired. Reports without a
    ``paired`` key get it computed. Empty for a single variant.
    """
    ref, others = _others(report)
    if not others:
        return ""
    paired = _paired(report)
    names = sorted(set().union(*(_summary(paired.get(v, {})) for v in others)))
    rows = []
    for name in names:
        for v in others:
            st = paired.get(v, {}).get(name)
            if st is None:
                continue
            unpaired = ", ".join(map(str, st.get("unpaired_seeds", []))) or "-"
            rows.append(
                [
                    _label(name),
                    f"{v} − {ref}",
                    format_difference(st, name, mark=False),
                    _fmt_p(st.get("p_value")),
                    effect_label(st),
                    unpaired,
                ]
            )
    headers = [
        "metric",
        "variant − reference",
        "mean difference [95 % CI] (n)",
        "p (paired t-test)",
        "verdict",
        "unpaired seeds",
    ]
    title = f"Paired differences vs {ref} (same seed; two-sided paired t-test)"
    return "\n".join([title, "", *_md_table(headers, rows, left=2)]) + "\n"


def per_seed_markdown(report: Mapping[str, Any], metric: str | None = None) -> str:
    """Markdown table of one metric seed by seed (default :func:`main_metric`).

    Columns: seed, the reference's value, then per other variant its value
    and its difference to the reference; the last row is the mean paired
    difference [95 % CI]. Empty when the report has no such metric.
    """
    metric = metric or main_metric(report)
    if metric is None:
        return ""
    ref, others = _others(report)
    scale, d = _scale_digits(metric)
    by_seed = {v: _by_seed(report, v, metric) or {} for v in [ref, *others]}
    seeds: list[int] = []
    for v in [ref, *others]:
        seeds += [s for s in _variant_seeds(report, v) if s not in seeds]
    headers = ["seed", ref]
    for v in others:
        headers += [v, f"{v} − {ref}"]

    def cell(v: str, seed: int) -> str:
        x = by_seed[v].get(seed)
        return "-" if x is None or not np.isfinite(x) else f"{scale * x:.{d}f}"

    rows = []
    for seed in seeds:
        row = [str(seed), cell(ref, seed)]
        for v in others:
            a, b = by_seed[ref].get(seed), by_seed[v].get(seed)
            diff = "-"
            if a is not None and b is not None and np.isfinite(a) and np.isfinite(b):
                diff = f"{scale * (b - a):+.{d}f}"
            row += [cell(v, seed), diff]
        rows.append(row)
    if others:
        paired = _paired(report)
        last = ["mean difference [95 % CI]", ""]
        for v in others:
            st = paired.get(v, {}).get(metric)
            last += ["", format_difference(st, metric) if st else "-"]
        rows.append(last)
    return "\n".join([f"Per seed: {_label(metric)}", "", *_md_table(headers, rows)]) + "\n"


_PER_CLASS_IOU = re.compile(r"^(?P<prefix>.*iou_per_class)/(?P<index>\d+)$")


def per_class_markdown(report: Mapping[str, Any]) -> str:
    """Markdown table(s) of per-class IoU (%): mean ± std per variant, paired difference.

    One row per class, named from :func:`class_names` when the report (or the
    runs' ``base.json``) has names, by index otherwise; one table per
    ``...iou_per_class`` group. Empty when the report has no per-class IoU.
    """
    ref, others = _others(report)
    groups: dict[str, list[int]] = {}
    for key in report[ref]["metrics"]:
        m = _PER_CLASS_IOU.match(key)
        if m:
            groups.setdefault(m["prefix"], []).append(int(m["index"]))
    if not groups:
        return ""
    names = class_names(report)
    paired = _paired(report) if others else {}
    out: list[str] = []
    for prefix, indices in sorted(groups.items()):
        headers = ["class", *[f"{v} mean ± std" for v in report["variants"]]]
        headers += [_diff_header(report, v) for v in others]
        rows = []
        for c in sorted(indices):
            key = f"{prefix}/{c}"
            label = names[c] if names is not None and c < len(names) else str(c)
            row = [label]
            for v in report["variants"]:
                st = report[v]["metrics"].get(key)
                row.append(_fmt(key, st)[0] if st else "-")
            for v in others:
                pd = paired.get(v, {}).get(key)
                row.append(format_difference(pd, key) if pd else "-")
            rows.append(row)
        out += [f"Per-class IoU (%), {prefix}", "", *_md_table(headers, rows), ""]
    return "\n".join(out)


def compare_markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown: the main table with the paired differences vs the
    reference, the paired statistics, the main metric seed by seed, per-class IoU,
    then the inference cost, the overrides, the machine and date.

    Reports written before the paired statistics existed get them computed.
    """
    ref, others = _others(report)
    lines = [
        "# Baseline vs DejaVu",
        "",
        f"Seeds: {', '.join(map(str, report['seeds']))}. Values are final validation metrics, "
        "mean ± sample std (ddof=1) over seeds; metrics marked (%) are in percent "
        "(differences in percentage points).",
        "",
    ]
    if others:
        lines += [f"Reference: **{ref}**. {EFFECT_LEGEND}", ""]
    lines += _md_table(_headers(report), _rows(report))
    for section in (
        paired_markdown(report),
        per_seed_markdown(report) if others else "",
        per_class_markdown(report),
    ):
        if section:
            lines += ["", section.rstrip("\n")]
    equal = report["inference_cost_equal"]
    lines += [
        "",
        "Inference networks: "
        + ("identical parameters and GMACs." if equal else "different cost (shared attention)."),
        "",
        "Variants:",
        "",
    ]
    for v in report["variants"]:
        overrides = " ".join(f"`{o}`" for o in report[v]["overrides"]) or "(none)"
        times = ", ".join(f"{t:.1f}" for t in report[v]["train_time_s"])
        lines.append(f"- **{v}**: {overrides}; training time per seed (s): {times}")
    machine = report["machine"]
    lines += [
        "",
        f"Common overrides: {' '.join(f'`{o}`' for o in report['overrides']) or '(none)'}",
        "",
        f"Machine: {machine_text(machine)}; date {report['date']}.",
        "",
    ]
    return "\n".join(lines)
