"""``dejavu predict``: run the base network on images and write its predictions.

For each image and head, ``<name>_<head>.png`` (the head spec's colouriser)
and ``<name>_<head>.npy`` (the head spec's array: ``seg``: ``H x W`` class
indices; ``depth``: ``H x W`` metres; ``normals``: ``3 x H x W`` unit vectors),
unless the head spec writes its own files: ``panoptic`` writes the COCO
panoptic format, ``<name>_panoptic.png`` (segment ids as ``R + 256 G + 256^2 B``)
and ``<name>_panoptic.json`` (``segments_info``), plus a coloured picture
``<name>_panoptic_color.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dejavu.dejavu import prediction_dict
from dejavu.toolkit.config import ExperimentConfig
from dejavu.toolkit.training.datamodule import DenseDataModule
from dejavu.toolkit.training.runner import load_eval_model

__all__ = ["run_predict"]


def _save_prediction(
    name: str, pred: dict[str, torch.Tensor], meta: dict[str, Any], out_dir: Path
) -> list[Path]:
    """Write the predictions of one image (``pred``: the network's outputs, batch of 1)."""
    import numpy as np
    from PIL import Image

    from dejavu.toolkit.tasks import head_spec

    written: list[Path] = []
    postprocess = meta.get("postprocess") or {}
    for key in meta["heads"]:
        spec = head_spec(key)
        value = spec.prediction(
            pred, meta.get("categories"), int(meta.get("ignore_index", 255)), postprocess.get(key)
        )[0]
        v = value.detach().cpu()
        v = v.float() if v.is_floating_point() else v
        if spec.write is not None:
            written += spec.write(name, v, meta, out_dir)
            continue
        num_classes = meta.get("num_classes") or (v.shape[0] if spec.channels is None else None)
        npy = out_dir / f"{name}_{key}.npy"
        png = out_dir / f"{name}_{key}.png"
        np.save(npy, spec.to_array(v))
        Image.fromarray(spec.colorize(v, num_classes, None)).save(png)
        written += [png, npy]
    return written


def run_predict(
    cfg: ExperimentConfig,
    checkpoint: str | Path,
    inputs: Sequence[Path] | None,
    out_dir: Path,
) -> list[Path]:
    """Predict with the base network and write colourised PNGs and raw ``.npy`` arrays.

    For each image and head, ``out_dir / <name>_<head>.png`` (colourised) and
    ``<name>_<head>.npy`` (the head spec's array: ``seg``: ``H x W`` class
    indices; ``depth``: ``H x W`` metres; ``normals``: ``3 x H x W`` unit vectors).

    Args:
        cfg: the experiment config (its ``data`` section when ``inputs`` is None).
        checkpoint: ``.ckpt``, ``base.safetensors`` or a run directory.
        inputs: image files or folders of them (named by their stem; see
            :func:`~dejavu.toolkit.data.io.input_images`); ``None``: the
            ``data.test_split`` samples (named by the dataset).
        out_dir: where to write (created).

    Returns:
        The files written.
    """
    from dejavu.toolkit.data.io import image_to_tensor, input_images, read_image
    from dejavu.toolkit.data.limits import set_max_image_pixels

    set_max_image_pixels(cfg.data.max_image_pixels)
    # Folders expanded and every image read once first: a bad file is an error before
    # anything is written.
    files = input_images(inputs) if inputs is not None else None
    model, meta = load_eval_model(checkpoint)
    use_cuda = torch.cuda.is_available() and cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    device = torch.device("cuda" if use_cuda else "cpu")
    model.to(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mean = torch.tensor(meta["mean"]).view(3, 1, 1)
    std = torch.tensor(meta["std"]).view(3, 1, 1)

    def samples() -> Any:
        if files is None:
            ds = DenseDataModule(cfg).dataset("test")
            for i in range(len(ds)):  # type: ignore[arg-type]
                s = ds[i]
                yield str(s.get("name", f"{i:06d}")), s["image"]
        else:
            for p in files:
                yield p.stem, (image_to_tensor(read_image(p)) - mean) / std

    written: list[Path] = []
    with torch.inference_mode():
        for name, image in samples():
            out = model(image.unsqueeze(0).to(device))
            pred = prediction_dict(out, next(iter(meta["heads"])))
            written += _save_prediction(name, pred, meta, out_dir)
    return written
