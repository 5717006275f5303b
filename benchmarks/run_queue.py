"""Train a list of (config, variant, seed) runs, a few at a time, resuming what is unfinished.

The runs are laid out as ``dejavu compare`` lays them out
(``<out>/runs/<variant>/seed<s>``, with ``name=seed<s>`` and the variant's
overrides), so a later ``dejavu compare CONFIG --seeds N --out <out>`` collects
them instead of training again. Each run is a ``dejavu fit`` subprocess with
``OMP_NUM_THREADS`` threads (default 1, so ``--jobs 2`` keeps two cores busy)
and its own log file; a run that has a ``last.ckpt`` is resumed, and a finished
one is skipped. Kill the script (or lose the machine) at any moment and run the
same command again: it continues.

Usage::

    python benchmarks/run_queue.py --jobs 2 \\
        --job configs/camvid/hrnet18_semi8_dejavu.yaml:/work/runs/camvid_semi8:dejavu:0 \\
        --job configs/camvid/hrnet18_semi8_dejavu.yaml:/work/runs/camvid_semi8:baseline:0

A job is ``CONFIG:OUT:VARIANT:SEED``; ``VARIANT`` is ``baseline``
(``dejavu.enabled=false``) or ``dejavu`` (``dejavu.enabled=true``), as in
``dejavu compare``'s default variants.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {"baseline": "dejavu.enabled=false", "dejavu": "dejavu.enabled=true"}


def finished(run_dir: Path) -> bool:
    """Whether the run's last validation reached its configured end (as compare decides)."""
    from dejavu.toolkit.config import config_from_dict, load_yaml
    from dejavu.toolkit.training.callbacks import read_metrics

    metrics, config = run_dir / "metrics.json", run_dir / "config.yaml"
    if not (metrics.is_file() and config.is_file() and (run_dir / "last.ckpt").is_file()):
        return False
    t = config_from_dict(load_yaml(config)).trainer
    _, history = read_metrics(metrics)
    if not history:
        return False
    last = history[-1]
    return last["step"] >= t.max_steps if t.max_steps > 0 else last["epoch"] >= t.max_epochs - 1


def command(config: str, out: str, variant: str, seed: int) -> tuple[list[str], Path]:
    run_dir = Path(out) / "runs" / variant / f"seed{seed}"
    cmd = [
        sys.executable, "-m", "dejavu.toolkit.cli", "fit", config, "--no-progress",
        "--set", VARIANTS[variant], "--set", f"seed={seed}",
        "--set", f"output_dir={run_dir.parent}", "--set", f"name={run_dir.name}",
    ]  # fmt: skip
    if run_dir.is_dir():
        # A run with a checkpoint continues from it; one killed before its first
        # checkpoint starts again from step 0 (what `fit --resume` does for it).
        cmd.append("--resume")
    return cmd, run_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--job", action="append", required=True, metavar="CONFIG:OUT:VARIANT:SEED")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run")
    ap.add_argument("--logs", type=Path, default=Path("runs/logs"))
    args = ap.parse_args()
    queue = []
    for spec in args.job:
        config, out, variant, seed = spec.rsplit(":", 3)
        if variant not in VARIANTS:
            raise SystemExit(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        queue.append((config, out, variant, int(seed)))
    args.logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    running: list[tuple[subprocess.Popen, str]] = []
    while queue or running:
        while queue and len(running) < args.jobs:
            config, out, variant, seed = queue.pop(0)
            cmd, run_dir = command(config, out, variant, seed)
            label = f"{Path(out).name}/{variant}/seed{seed}"
            if finished(run_dir):
                print(f"{time.strftime('%H:%M:%S')} finished already: {label}", flush=True)
                continue
            log = args.logs / f"{Path(out).name}_{variant}_seed{seed}.log"
            print(f"{time.strftime('%H:%M:%S')} start {label} (log {log})", flush=True)
            with log.open("a") as sink:  # the child keeps its own copy of the descriptor
                proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT)
            running.append((proc, label))
        time.sleep(10)
        for proc, label in list(running):
            if proc.poll() is not None:
                print(f"{time.strftime('%H:%M:%S')} exit {proc.returncode}: {label}", flush=True)
                running.remove((proc, label))


if __name__ == "__main__":
    main()
