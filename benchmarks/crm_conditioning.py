"""How much does a trained CRM use its conditioning? (segmentation runs)

DejaVu can only teach the segmentation network through the conditioning: if
the CRM regenerates the redacted pixels as well without it, the gradient that
reaches the network says little about the scene. This script takes a DejaVu
checkpoint and measures, on a split's images with the same redactions for
every variant, the CRM's L1 error on the redacted pixels (the training loss
with ``kept_weight 0``; normalised image units) when it is given

- ``own``: the network's own conditioning, as in training;
- ``truth``: the ground-truth class masks (void pixels keep the prediction);
- ``other image``: the conditioning of another image of the batch (half a
  batch away; CamVid's val images are frames of one drive, so layouts are alike);
- ``upside down``: the own conditioning flipped vertically (right classes,
  wrong places);
- ``uniform``: the same value for every class (no layout at all).

Usage::

    python benchmarks/crm_conditioning.py runs/compare_hrnet18_dejavu/runs/dejavu/seed0 \
        runs/prelim30/blocks16/seed0 --out benchmarks/results/crm_conditioning.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from dejavu.toolkit.data import pad_collate
from dejavu.toolkit.training import DenseDataModule, load_run


@torch.no_grad()
def measure(checkpoint: Path, split: str, batch_size: int, seed: int) -> dict[str, float]:
    """Mean redacted-pixel L1 of the CRM per conditioning variant over ``split``."""
    cfg, module = load_run(checkpoint)
    objective = module.model
    if getattr(objective, "crm", None) is None or cfg.task.name != "segmentation":
        raise SystemExit(f"{checkpoint} is not a DejaVu segmentation run (no CRM)")
    k = module.task.num_classes
    ignore = module.task.ignore_index
    dataset = DenseDataModule(cfg).dataset(split)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        collate_fn=functools.partial(pad_collate, multiple=cfg.data.pad_to_multiple or 1),
    )
    totals: dict[str, float] = {}
    n = 0
    for i, batch in enumerate(loader):
        image = batch["image"]
        objective.generator.manual_seed(seed * 1_000_003 + i)
        redacted = objective.redaction(image, generator=objective.generator)
        pred = objective.predict(image)
        working = objective.crm.working_size(*image.shape[-2:])
        own = objective.conditioning(pred, size=working)
        label = F.interpolate(batch["seg"][:, None].float(), size=working, mode="nearest")[:, 0]
        label = label.long()
        valid = label != ignore
        truth = F.one_hot(label.clamp(0, k - 1), k).permute(0, 3, 1, 2).to(own.dtype)
        truth = torch.where(valid[:, None], truth, own)
        variants = {
            "own": own,
            "truth": truth,
            "other image": own.roll(max(1, own.shape[0] // 2), dims=0),
            "upside down": own.flip(-2),
            "uniform": torch.full_like(own, 1.0 / k),
        }
        target = objective.crm.resize_to_working(image)
        b = image.shape[0]
        for name, cond in variants.items():
            regenerated = objective.crm(redacted.image, cond, redacted.keep)
            loss = objective.regen_loss(regenerated, target, keep=redacted.keep)
            totals[name] = totals.get(name, 0.0) + float(loss) * b
        n += b
    return {name: total / n for name, total in totals.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+", help="DejaVu run directories or .ckpt files")
    ap.add_argument("--split", default="val", choices=["train", "val", "test"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0, help="seed of the redactions")
    ap.add_argument("--out", type=Path, help="write the figures to this JSON file")
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    for run in args.runs:
        ckpt = run / "last.ckpt" if run.is_dir() else run
        losses = measure(ckpt, args.split, args.batch, args.seed)
        results[str(ckpt)] = losses
        own = losses["own"]
        print(f"CRM L1 on redacted pixels, {args.split} split, {ckpt}")
        for name, value in losses.items():
            print(f"  {name:12s} {value:.4f}  ({100 * (value / own - 1):+.1f} % vs own)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "split": args.split,
            "seed": args.seed,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "redacted_l1": results,
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
