"""The training-loss terms at the end of each run, per sweep cell: what each term settled at.

Validation metrics say how well a cell did; the training terms say why. With
DejaVu-CL, for example, the regeneration loss settles far above its level
without CL, which validation never shows. This reads the per-step training
terms that ``dejavu fit`` logs (``csv/version_<n>/metrics.csv``, one version
per launch: a resumed run's later launch overrides the steps it redid), and
averages each ``train/<term>`` over the last ``--last`` logged steps of each
run. Finished runs are found under the given folders (a sweep's ``--out``,
or any folder of runs; pruned records, which keep no training log, and runs
still training are skipped) and grouped by folder and cell (the run folder's
parent, as ``dejavu sweep`` names it): ``<folder name>/<cell>``. It prints a
markdown table of the mean over a cell's runs, and writes every run's values
with ``--out``.

Usage::

    python benchmarks/train_losses.py runs/studies/crm --terms task regen cyclic \\
        --out benchmarks/results/study_crm_train_losses.json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dejavu.toolkit.compare import find_run_dirs
from dejavu.toolkit.compare.runs import prunable

DEFAULT_TERMS = ("loss", "task", "regen", "cyclic", "text", "sa")


def training_terms(run_dir: Path) -> dict[int, dict[str, float]]:
    """``step -> {term: value}`` of the ``train/<term>`` values a run logged, all launches.

    Launches are read in version order, so a step that a resumed launch logged again
    keeps the resumed launch's values.

    Raises:
        FileNotFoundError: the run has no ``csv/version_*/metrics.csv`` (a pruned
            record keeps none).
    """
    files = sorted(
        (run_dir / "csv").glob("version_*/metrics.csv"),
        key=lambda p: int(p.parent.name.removeprefix("version_")),
    )
    if not files:
        raise FileNotFoundError(f"{run_dir}: no csv/version_*/metrics.csv (training log)")
    steps: dict[int, dict[str, float]] = {}
    for path in files:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                values = {
                    key.removeprefix("train/"): float(v)
                    for key, v in row.items()
                    if key.startswith("train/") and v not in ("", None)
                }
                if values and row.get("step"):
                    steps.setdefault(int(row["step"]), {}).update(values)
    return steps


def final_terms(run_dir: Path, terms: Sequence[str], last: int) -> dict[str, float]:
    """Mean of each term over the run's logged steps in ``(max_step - last, max_step]``."""
    steps = training_terms(run_dir)
    if not steps:
        raise ValueError(f"{run_dir}: its training log holds no train/ values")
    end = max(steps)
    window = [v for s, v in steps.items() if s > end - last]
    out = {}
    for term in terms:
        values = [v[term] for v in window if term in v and math.isfinite(v[term])]
        if values:
            out[term] = sum(values) / len(values)
    return out


def _finished(run_dir: Path) -> bool:
    # prunable() refuses exactly the runs that have not reached their last step.
    return prunable(run_dir)[1] is None


def collect(folders: Sequence[Path], terms: Sequence[str], last: int) -> dict[str, Any]:
    """``{"cells": {"<folder>/<cell>": {"mean": {term: v}, "runs": {seed folder: {term: v}}}}}``."""
    cells: dict[str, dict[str, dict[str, float]]] = {}
    for folder in folders:
        for run_dir in find_run_dirs(folder):
            if not (run_dir / "csv").is_dir() or not _finished(run_dir):
                continue  # a pruned record (its log is gone), or a run still training
            key = f"{folder.name}/{run_dir.parent.name}"
            cells.setdefault(key, {})[run_dir.name] = final_terms(run_dir, terms, last)
    if not cells:
        raise ValueError(f"no run with a training log under {', '.join(map(str, folders))}")
    out: dict[str, Any] = {}
    for cell, runs in cells.items():
        mean = {}
        for term in terms:
            values = [r[term] for r in runs.values() if term in r]
            if values:
                mean[term] = sum(values) / len(values)
        out[cell] = {"mean": mean, "runs": dict(sorted(runs.items()))}
    return {"last_steps": last, "terms": list(terms), "cells": out}


def table(report: dict[str, Any]) -> str:
    """Markdown: a row per cell, the mean over its runs of each term (``-``: not logged)."""
    terms = report["terms"]
    lines = [
        "| cell | runs | " + " | ".join(terms) + " |",
        "| --- | ---: |" + " ---: |" * len(terms),
    ]
    for cell, entry in report["cells"].items():
        values = [f"{entry['mean'][t]:.4f}" if t in entry["mean"] else "-" for t in terms]
        lines.append(f"| {cell} | {len(entry['runs'])} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+", help="folders holding run folders")
    parser.add_argument("--terms", nargs="+", default=list(DEFAULT_TERMS),
                        help="train/<term> columns to average")  # fmt: skip
    parser.add_argument("--last", type=int, default=400, help="the last N steps of each run")
    parser.add_argument("--out", type=Path, help="write every run's values as JSON")
    parser.add_argument("--md", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    if args.last < 1:
        parser.error(f"--last must be >= 1, got {args.last}")
    report = collect(args.folders, args.terms, args.last)
    report["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["command"] = " ".join(["python", "benchmarks/train_losses.py", *(argv or sys.argv[1:])])
    text = table(report)
    print(text)
    for path, content in ((args.out, json.dumps(report, indent=1) + "\n"), (args.md, text + "\n")):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
