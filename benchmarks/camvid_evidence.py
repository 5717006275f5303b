"""Issue #9's CamVid statistics from the committed run files, without the run folders.

``dejavu compare`` computes the same statistics from the run folders it trains
(``runs/camvid_*``, not in the repository). This script recomputes them from
the per-run final metrics committed in ``benchmarks/results/camvid_runs/``
(``<regime>_<variant>_seed<S>.json``, each a run's ``metrics.json``), so anyone
can check the reported numbers: per seed the final val mIoU of both variants
and their difference, the mean paired difference with its 95 % t-interval and
paired t-test (:func:`dejavu.toolkit.compare.paired_difference`), and the
per-class IoU (mean over the paired seeds, and its paired difference).

Usage::

    python benchmarks/camvid_evidence.py full            # all labels
    python benchmarks/camvid_evidence.py semi8           # 1/8 of the labels
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from dejavu.toolkit.compare import format_difference, paired_difference
from dejavu.toolkit.data.factory import dataset_class

RUNS = Path(__file__).resolve().parent / "results" / "camvid_runs"


def finals(regime: str, variant: str) -> dict[int, dict[str, float]]:
    """``seed -> final val metrics`` of every committed run of a regime and variant."""
    out = {}
    for path in RUNS.glob(f"{regime}_{variant}_seed*.json"):
        match = re.fullmatch(rf"{regime}_{variant}_seed(\d+)\.json", path.name)
        if match:
            out[int(match.group(1))] = json.loads(path.read_text())["final"]
    return out


def report(regime: str) -> str:
    """The markdown tables of one regime (paired seeds only)."""
    base, dv = finals(regime, "baseline"), finals(regime, "dejavu")
    seeds = sorted(set(base) & set(dv))
    lines = [f"paired seeds: {seeds} (baseline only: {sorted(set(base) - set(dv))})", ""]
    lines += ["| seed | baseline | DejaVu | difference |", "| ---: | ---: | ---: | ---: |"]
    for s in seeds:
        a, b = 100 * base[s]["seg/miou"], 100 * dv[s]["seg/miou"]
        lines.append(f"| {s} | {a:.2f} | {b:.2f} | {b - a:+.2f} |")
    if len(seeds) < 2:
        return "\n".join(lines)
    d = paired_difference([base[s]["seg/miou"] for s in seeds], [dv[s]["seg/miou"] for s in seeds])
    lines += ["", f"mean paired difference (val mIoU, points): {format_difference(d, 'seg/miou')}"]
    lines.append(f"paired t-test p = {d['p_value']:.3f}")
    names = dataset_class("camvid").class_names
    lines += ["", "| class | baseline IoU | DejaVu IoU | paired difference |"]
    lines.append("| --- | ---: | ---: | ---: |")
    for i, name in enumerate(names):
        key = f"seg/iou_per_class/{i}"
        a = [base[s][key] for s in seeds]
        b = [dv[s][key] for s in seeds]
        diff = format_difference(paired_difference(a, b), "seg/miou")
        lines.append(
            f"| {name} | {100 * sum(a) / len(a):.2f} | {100 * sum(b) / len(b):.2f} | {diff} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("regime", choices=["full", "semi8"], help="all labels or 1/8 of them")
    print(report(parser.parse_args().regime))


if __name__ == "__main__":
    main()
