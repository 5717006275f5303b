"""Plot validation mIoU curves of training runs (from their metrics.json).

Usage::

    python benchmarks/plot_curves.py [--x step] OUT.png LABEL=RUN_DIR [LABEL=RUN_DIR ...]

The last "=" separates a label from its run directory. The x axis is the epoch, or
with ``--x step`` the optimiser step (for runs whose epochs differ in length).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dejavu.toolkit.training.callbacks import read_metrics


def main(argv: list[str]) -> None:
    x = "epoch"
    if argv[:1] == ["--x"]:
        x, argv = argv[1], argv[2:]
    if x not in ("epoch", "step") or len(argv) < 2:
        raise SystemExit(__doc__)
    out, runs = Path(argv[0]), [a.rsplit("=", 1) for a in argv[1:]]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    for label, run_dir in runs:
        _, history = read_metrics(Path(run_dir) / "metrics.json")
        xs = [h["epoch"] + 1 if x == "epoch" else h["step"] for h in history]
        ax.plot(xs, [100 * h["seg/miou"] for h in history], marker=".", label=label)
    ax.set_xlabel(x)
    ax.set_ylabel("val mIoU (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
