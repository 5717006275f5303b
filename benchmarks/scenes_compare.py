"""Paired-seed comparison on the embedded scenes at demo scale (issue #9's scenes evidence).

For each task, ``dejavu compare configs/scenes/<task>_dejavu.yaml --seeds N``
scaled down exactly as ``dejavu demo`` scales it (:func:`dejavu.toolkit.demo.demo_overrides`:
``fpn_test_efficientnet``, 96 x 128 scenes, 800 / 64 images, 200 steps of batch 8),
so the baseline and DejaVu differ only in ``dejavu.enabled``. Segmentation
uses the CamVid design (``configs/camvid/hrnet18_dejavu.yaml``: CRM-0 with
8 x 8 tiles, random-pixel redaction keeping 25 %, straight-through hard masks,
L1 on the redacted pixels only); depth and normals keep their config's design
(CRM-F, band-stop spectral redaction), since CRM-0 needs class probabilities.
The regeneration warm-up is off, as in the scenes configs.

Usage::

    python benchmarks/scenes_compare.py --seeds 5 --out runs/scenes_compare

prints each ``dejavu compare`` command before running it (re-running the
script reuses finished runs) and copies each ``compare.json`` to
``benchmarks/results/scenes_<task>_compare.json``.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from dejavu.toolkit.demo import DEMO_TASKS, FULL, default_config_dir, demo_overrides

#: The CamVid design (configs/camvid/hrnet18_dejavu.yaml), as overrides of a scenes config.
CRM0_DESIGN = [
    "dejavu.redaction={name: random, p: 0.25}",
    "dejavu.crm={kind: zero, tile: 8, scale: 0.5}",
    "dejavu.conditioning.hard=true",
    "dejavu.regen_loss={kind: l1, redacted_weight: 1.0, kept_weight: 0.0}",
]


def task_overrides(task: str, out: Path) -> list[str]:
    """The demo-scale overrides of one task, without the seed (compare sets it)."""
    sets = [
        s
        for s in demo_overrides(FULL, out / task, cache_dir=None)
        if not s.startswith(("seed=", "output_dir="))
    ]
    if task == "segmentation":
        sets = [s for s in sets if not s.startswith("dejavu.crm.width=")] + CRM0_DESIGN
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/scenes_compare"))
    parser.add_argument("--tasks", nargs="+", default=list(DEMO_TASKS), choices=DEMO_TASKS)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    for task in args.tasks:
        config = default_config_dir() / f"{task}_dejavu.yaml"
        cmd = [sys.executable, "-m", "dejavu.toolkit.cli", "compare", str(config)]
        cmd += ["--seeds", str(args.seeds), "--out", str(args.out / task)]
        for s in task_overrides(task, args.out):
            cmd += ["--set", s]
        print("$", shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        args.results.mkdir(parents=True, exist_ok=True)
        target = args.results / f"scenes_{task}_compare.json"
        shutil.copyfile(args.out / task / "compare.json", target)
        print(f"wrote {target}", flush=True)


if __name__ == "__main__":
    main()
