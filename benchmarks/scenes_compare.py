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

With ``--labeled-fraction F`` the comparison is the few-labels regime of
``configs/camvid/hrnet18_semi8_dejavu.yaml``, with that config's DejaVu
settings fixed before any scenes run: a seeded fraction ``F`` of the 800
training scenes keeps its labels, DejaVu also regenerates the others (8
labelled + 8 unlabelled per step, regeneration weight 0.25, the weight the
CamVid 1/8-label pilots chose), and the baseline trains on the labelled
scenes alone for the same steps.

Usage::

    python benchmarks/scenes_compare.py --seeds 5 --out runs/scenes_compare
    python benchmarks/scenes_compare.py --seeds 5 --out runs/scenes_compare \
        --tasks segmentation --labeled-fraction 0.125

prints each ``dejavu compare`` command before running it (re-running the
script reuses finished runs) and copies each ``compare.json`` to
``benchmarks/results/scenes_<task>_compare.json`` (with a labelled fraction,
``scenes_<task>_labeled<percent>_compare.json``, e.g. ``labeled12.5``).
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


#: The few-labels regime of configs/camvid/hrnet18_semi8_dejavu.yaml (with --labeled-fraction).
SEMI_DESIGN = ["data.unlabeled_batch_size=8", "dejavu.regen_weight=0.25"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("runs/scenes_compare"))
    parser.add_argument("--tasks", nargs="+", default=list(DEMO_TASKS), choices=DEMO_TASKS)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--labeled-fraction",
        type=float,
        default=None,
        help="keep the labels of this seeded fraction of the training scenes (0 < F < 1)",
    )
    args = parser.parse_args()
    frac = args.labeled_fraction
    if frac is not None and not 0 < frac < 1:
        parser.error(f"--labeled-fraction must be in (0, 1), got {frac}")
    suffix = "" if frac is None else f"_labeled{100 * frac:g}"

    for task in args.tasks:
        config = default_config_dir() / f"{task}_dejavu.yaml"
        out = args.out / f"{task}{suffix}"
        cmd = [sys.executable, "-m", "dejavu.toolkit.cli", "compare", str(config)]
        cmd += ["--seeds", str(args.seeds), "--out", str(out)]
        sets = task_overrides(task, args.out)
        if frac is not None:
            sets += [f"data.labeled_fraction={frac}", *SEMI_DESIGN]
        for s in sets:
            cmd += ["--set", s]
        print("$", shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        args.results.mkdir(parents=True, exist_ok=True)
        target = args.results / f"scenes_{task}{suffix}_compare.json"
        shutil.copyfile(out / "compare.json", target)
        print(f"wrote {target}", flush=True)


if __name__ == "__main__":
    main()
