"""Tables and curves of a segmentation ``dejavu compare`` report (its compare.json).

Prints markdown: one row per variant and seed with mIoU, aAcc, mAcc and the
per-class IoU (class names from the report or the runs' ``base.json``), then
mean +- sample std per variant; the paired differences to the reference
variant (same seed; mean, 95 % t-interval, paired t-test p-value, and
"effect" only when the interval excludes 0, else "no measurable effect"),
mIoU seed by seed, and the inference cost. The statistics and tables come
from :mod:`dejavu.toolkit.compare`; reports written before ``compare.json``
held them (no ``paired`` key) get them computed here. With ``--curves
OUT.png`` it also plots val mIoU per epoch: every seed as a thin line and the
per-epoch mean of each variant as a thick one.

Usage::

    python benchmarks/compare_report.py runs/compare_hrnet18_dejavu/compare.json \
        --curves docs/img/camvid_curves.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from dejavu.toolkit.compare import (
    class_names,
    paired_markdown,
    paired_section,
    per_seed_markdown,
    reference_variant,
)


def _per_seed(report: dict[str, Any], variant: str, name: str) -> list[float]:
    return [100.0 * v for v in report[variant]["metrics"][name]["values"]]


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} +- {std:.1f}"


def tables(report: dict[str, Any]) -> str:
    """The markdown tables of a segmentation compare report."""
    variants = list(report["variants"])
    seeds = list(report["seeds"])
    first = report[variants[0]]["metrics"]
    k = len([n for n in first if n.startswith("seg/iou_per_class/")])
    names = class_names(report, variants[0]) or [str(c) for c in range(k)]
    header = ["run", "mIoU", "aAcc", "mAcc", *names]
    lines = [
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * (len(header) - 1),
    ]
    summary = ["seg/miou", "seg/aacc", "seg/macc"]
    per_class = [f"seg/iou_per_class/{c}" for c in range(k)]
    for v in variants:
        cols = {n: _per_seed(report, v, n) for n in summary + per_class}
        for i, seed in enumerate(seeds):
            row = [f"{v}, seed {seed}"] + [f"{cols[n][i]:.1f}" for n in summary + per_class]
            lines.append("| " + " | ".join(row) + " |")
    for v in variants:
        cols = {n: _per_seed(report, v, n) for n in summary + per_class}
        row = [f"**{v}**, mean +- std"] + [_mean_std(cols[n]) for n in summary + per_class]
        lines.append("| " + " | ".join(row) + " |")

    out = ["\n".join(lines), ""]
    if len(variants) > 1:
        out += [paired_markdown(report), per_seed_markdown(report, "seg/miou")]
    spread = ", ".join(
        f"{v} {max(m) - min(m):.1f}" for v in variants for m in [_per_seed(report, v, "seg/miou")]
    )
    out += [f"mIoU seed spread (max - min): {spread}", ""]
    out.append("| variant | inference params | GMACs | train time per run (min) |")
    out.append("| --- | ---: | ---: | --- |")
    for v in variants:
        e = report[v]
        times = ", ".join(f"{t / 60:.0f}" for t in e.get("train_time_s", []))
        out.append(f"| {v} | {e['params']:,} | {e['gmacs']:.3f} | {times} |")
    return "\n".join(out) + "\n"


def curves(report: dict[str, Any], out: Path) -> Path:
    """Plot val mIoU per epoch: thin per-seed lines, a thick per-epoch mean per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=120)
    for i, v in enumerate(report["variants"]):
        color = f"C{i}"
        histories = report[v]["history"]
        for h in histories:
            ax.plot(
                [e["epoch"] + 1 for e in h],
                [100 * e["seg/miou"] for e in h],
                color=color,
                alpha=0.3,
                lw=0.8,
            )
        n = min(len(h) for h in histories)
        mean = [statistics.fmean(100 * h[j]["seg/miou"] for h in histories) for j in range(n)]
        epochs = [histories[0][j]["epoch"] + 1 for j in range(n)]
        ax.plot(epochs, mean, color=color, lw=2, label=f"{v} (mean of {len(histories)} seeds)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("val mIoU (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("report", type=Path, help="compare.json written by `dejavu compare`")
    ap.add_argument("--curves", type=Path, help="also write the val mIoU curves here (PNG)")
    ap.add_argument(
        "--reference",
        metavar="NAME",
        help="variant the others are compared with (default: the report's, else the first)",
    )
    args = ap.parse_args()
    report = json.loads(args.report.read_text())
    reference = reference_variant(report, args.reference)
    if "paired" not in report or reference != report.get("reference"):
        # Reports written before compare.json held paired statistics, or another reference.
        report.update(reference=reference, paired=paired_section(report, reference))
    print(tables(report))
    if args.curves:
        print(f"wrote {curves(report, args.curves)}")


if __name__ == "__main__":
    main()
