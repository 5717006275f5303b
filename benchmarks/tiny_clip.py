"""Write the tiny CLIP of the tests as an open_clip local folder, for DejaVu-TS without weights.

DejaVu-TS needs a frozen CLIP read from a local file. Study 3 of issue #13
(``configs/studies/crm.yaml``) runs it on this machine, which has no CLIP
weights, with the tiny CLIP that DenseCLIP's tests use
(:data:`dejavu.toolkit.models.denseclip.DENSECLIP_TINY_CLIP`: a 4-layer,
32-wide ViT and a 2-layer text tower) at a seeded random initialisation. Such a
CLIP knows nothing, so the study measures DejaVu-TS's cost and that it trains,
not what a trained CLIP's text embeddings add; a user with real weights points
``dejavu.text.model_name`` / ``dejavu.text.pretrained`` at them instead.

The folder follows open_clip's ``local-dir:`` layout (``open_clip_config.json``
beside ``open_clip_pytorch_model.bin``), so a config names it as::

    dejavu.text.model_name=local-dir:runs/tiny_clip

(``dejavu.text.pretrained`` is optional with a ``local-dir:`` folder; the study's
commands also name the folder's weights file, which is accepted.)

Usage::

    python benchmarks/tiny_clip.py runs/tiny_clip [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dejavu.text_supervision import require_open_clip
from dejavu.toolkit.models.denseclip import DENSECLIP_TINY_CLIP


def write_tiny_clip(out: Path, seed: int = 0) -> Path:
    """Write the tiny CLIP's config and seeded random weights to ``out``; return the weights."""
    open_clip = require_open_clip("the tiny CLIP")
    out.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": DENSECLIP_TINY_CLIP, "preprocess_cfg": {}}
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    torch.manual_seed(seed)
    weights = out / "open_clip_pytorch_model.bin"
    torch.save(open_clip.CLIP(**DENSECLIP_TINY_CLIP).state_dict(), weights)
    return weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args()
    weights = write_tiny_clip(args.out, args.seed)
    print(f"model_name=local-dir:{args.out}\npretrained={weights}")


if __name__ == "__main__":
    main()
