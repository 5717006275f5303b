"""Issue #9's CamVid statistics from the committed run files, without the run folders.

``dejavu compare`` computes the same statistics from the run folders it trains
(``runs/camvid_*``, not in the repository). This script recomputes them from
the per-run final metrics committed in ``benchmarks/results/camvid_runs/``
(``<regime>_<variant>_seed<S>.json``, each a run's ``metrics.json``), so anyone
can check the reported numbers: per seed the final val mIoU of both variants
and their difference, the mean paired difference with its 95 % t-interval and
paired t-test (:func:`dejavu.toolkit.compare.paired_difference`), and the
per-class IoU (mean over the paired seeds, and its paired difference).

With ``--curves OUT.png`` it also draws the val mIoU per epoch of both
variants: the mean over the paired seeds, each seed as a thin line.

Usage::

    python benchmarks/camvid_evidence.py full            # all labels
    python benchmarks/camvid_evidence.py semi8 --curves docs/img/camvid_semi8_curves.png
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from dejavu.toolkit.compare import format_difference, paired_difference
from dejavu.toolkit.data.factory import dataset_class

RUNS = Path(__file__).resolve().parent / "results" / "camvid_runs"


def runs(regime: str, variant: str) -> dict[int, dict]:
    """``seed -> metrics.json`` (``final`` and ``history``) of every committed run."""
    out = {}
    for path in RUNS.glob(f"{regime}_{variant}_seed*.json"):
        match = re.fullmatch(rf"{regime}_{variant}_seed(\d+)\.json", path.name)
        if match:
            out[int(match.group(1))] = json.loads(path.read_text())
    return out


def finals(regime: str, variant: str) -> dict[int, dict[str, float]]:
    """``seed -> final val metrics`` of every committed run of a regime and variant."""
    return {seed: run["final"] for seed, run in runs(regime, variant).items()}


def histories(regime: str, variant: str) -> dict[int, list[float]]:
    """``seed -> val mIoU per epoch`` of every committed run of a regime and variant."""
    return {
        seed: [100 * h["seg/miou"] for h in run["history"]]
        for seed, run in runs(regime, variant).items()
    }


def curves(regime: str, out: Path) -> None:
    """Val mIoU per epoch, both variants, over the paired seeds (mean thick, seeds thin)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves_of = {v: histories(regime, v) for v in ("baseline", "dejavu")}
    seeds = sorted(set(curves_of["baseline"]) & set(curves_of["dejavu"]))
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=120)
    for variant, color in (("baseline", "tab:blue"), ("dejavu", "tab:orange")):
        series = [curves_of[variant][s] for s in seeds]
        for values in series:
            ax.plot(range(1, len(values) + 1), values, color=color, lw=0.6, alpha=0.4)
        n = min(len(v) for v in series)
        mean = [sum(v[i] for v in series) / len(series) for i in range(n)]
        label = "DejaVu" if variant == "dejavu" else "baseline"
        ax.plot(range(1, n + 1), mean, color=color, lw=2, label=f"{label} (mean)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("val mIoU (%)")
    title = "all labels" if regime == "full" else "1/8 of the labels"
    ax.set_title(f"CamVid, hrnet18 from scratch, {title}: seeds {seeds}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


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
    parser.add_argument("--curves", type=Path, help="also draw the val curves to this PNG")
    args = parser.parse_args()
    print(report(args.regime))
    if args.curves is not None:
        curves(args.regime, args.curves)
        print(f"\nwrote {args.curves}")


if __name__ == "__main__":
    main()
