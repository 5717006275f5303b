"""The side-by-side figure of trained runs: input, ground truth, each run's prediction,
and what a DejaVu run's regeneration branch makes of the same image.

This is the figure of the paper's qualitative results: for a few validation
images, one row each, the columns are

``input | <head> truth | <label> <head> ... | <label> redacted | <label> regenerated``

where the prediction columns repeat per run and per head, and the last two
appear for each run trained with DejaVu (a CRM). Predictions come from the
base network alone (what inference uses); the redacted and regenerated images
come from the run's full training objective in eval mode, with the redaction
drawn from a generator seeded by ``seed`` and the image index, so the figure
is the same each time. The regenerated column shows the CRM's output on the
redacted pixels and the input on the kept ones (with the default
``kept_weight = 0`` nothing asks the CRM to reproduce kept pixels).

Example:
    >>> from dejavu.toolkit.prediction_panel import parse_run_specs
    >>> parse_run_specs(["baseline=runs/a/last.ckpt", "runs/b/last.ckpt"])
    [('baseline', PosixPath('runs/a/last.ckpt')), ('b', PosixPath('runs/b/last.ckpt'))]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dejavu.dejavu import DejaVu
from dejavu.toolkit.errors import ConfigError, UserPathError
from dejavu.toolkit.tasks import head_spec
from dejavu.toolkit.visualize import colorize_prediction, denormalize, save_panel

__all__ = ["parse_run_specs", "prediction_columns", "save_prediction_panel"]


def parse_run_specs(specs: Sequence[str]) -> list[tuple[str, Path]]:
    """Parse ``LABEL=PATH`` (or bare ``PATH``) run specifications.

    ``PATH`` is a run's ``.ckpt`` or its run directory (``last.ckpt`` is
    used). A bare path is labelled by its run directory's name. The last
    ``=`` splits, so a label may contain ``=``.
    """
    runs: list[tuple[str, Path]] = []
    for spec in specs:
        label, sep, path = str(spec).rpartition("=")
        p = Path(path)
        if not sep:
            label = (p.parent if p.suffix == ".ckpt" else p).name
        if not label or not path:
            raise ConfigError(f"run must look like LABEL=CHECKPOINT or CHECKPOINT, got {spec!r}")
        runs.append((label, p))
    if not runs:
        raise ConfigError("give at least one run (LABEL=CHECKPOINT)")
    return runs


def _checkpoint(path: Path) -> Path:
    if path.is_dir():
        path = path / "last.ckpt"
    if not path.is_file():
        raise UserPathError(f"no checkpoint at {path} (give a run's .ckpt or its directory)")
    return path


def _resize_to(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def prediction_columns(
    runs: Sequence[tuple[str, str | Path]],
    indices: Sequence[int],
    *,
    split: str = "val",
    seed: int = 0,
    data_root: str | Path | None = None,
) -> tuple[list[tuple[str, list[np.ndarray]]], list[str]]:
    """The panel's columns and row titles for ``runs`` on images ``indices`` of ``split``.

    Args:
        runs: ``(label, checkpoint or run directory)`` pairs; all must be
            trained on the same dataset and task (the first run's data config
            builds the images).
        indices: dataset indices, one row each.
        split: ``"val"``, ``"train"`` or ``"test"`` (the config's split of
            that role).
        seed: seed of the redactions drawn for the DejaVu columns.
        data_root: overrides the dataset root of the configs.

    Returns:
        ``(columns, rows)``: ``(title, [H x W x 3 uint8 per row])`` pairs and
        the row titles (sample names).

    Raises:
        FileNotFoundError: a checkpoint is missing.
        ValueError: runs on different datasets or tasks, an index out of
            range, an empty ``indices``.
    """
    import dataclasses

    from dejavu.toolkit.data import pad_collate
    from dejavu.toolkit.training import DenseDataModule
    from dejavu.toolkit.training.runner import load_run

    if len(runs) == 0:
        raise ConfigError("give at least one run")
    if len(indices) == 0:
        raise ConfigError("indices must name at least one image")
    loaded = []
    for label, path in runs:
        cfg, module = load_run(_checkpoint(Path(path)))
        loaded.append((str(label), cfg, module))
    _, cfg0, module0 = loaded[0]
    for label, cfg, module in loaded[1:]:
        if (cfg.data.name, cfg.task.name) != (cfg0.data.name, cfg0.task.name) or dict(
            module.task.heads
        ) != dict(module0.task.heads):
            raise ConfigError(
                f"run {label!r} ({cfg.data.name}, {cfg.task.name}) does not match the first run "
                f"({cfg0.data.name}, {cfg0.task.name}); compare runs of one dataset and task"
            )
    data_cfg = (
        cfg0.data if data_root is None else dataclasses.replace(cfg0.data, root=str(data_root))
    )
    dm = DenseDataModule(dataclasses.replace(cfg0, data=data_cfg))
    dataset = dm.dataset(split)
    n = len(dataset)  # type: ignore[arg-type]  # the toolkit's datasets are sized
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
            raise ConfigError(f"index {i!r} is out of range for the {split} split of {n} images")
    heads = dict(module0.task.heads)
    num_classes = module0.task.num_classes
    mean, std = module0.mean, module0.std
    multiple = int(cfg0.data.pad_to_multiple or 1)

    cols: dict[str, list[np.ndarray]] = {"input": []}
    rows: list[str] = []
    for i in indices:
        sample = dataset[i]
        batch = pad_collate([sample], multiple=multiple)
        h, w = sample["image"].shape[-2:]
        rows.append(str(sample.get("name", i)))
        cols["input"].append(denormalize(sample["image"], mean, std))
        # Each head's prediction is coloured over its truth's range (depth), as the truth is.
        truth = {
            k: head_spec(k).target_value(sample) for k in heads if head_spec(k).has_target(sample)
        }
        ranges = {k: head_spec(k).colour_range(truth[k]) if k in truth else None for k in heads}
        for key in heads:
            if key in truth:
                cols.setdefault(f"{key} truth", []).append(
                    colorize_prediction(key, truth[key], num_classes, ranges[key])
                )
        for label, _cfg, module in loaded:
            pred = module(batch["image"])
            for key in heads:
                # the head's decoding (panoptic: the panoptic map), else its output
                value = module.task.prediction(pred, key)[0, :, :h, :w]
                cols.setdefault(f"{label} {key}", []).append(
                    colorize_prediction(key, value, num_classes, ranges[key])
                )
        for label, _cfg, module in loaded:
            objective = module.model
            if not isinstance(objective, DejaVu) or objective.crm is None:
                continue
            objective.generator.manual_seed(int(seed) * 1_000_003 + int(i))
            out = objective(batch, step=0)
            redacted = out["redacted"][:, :, :h, :w]
            size = (int(batch["image"].shape[-2]), int(batch["image"].shape[-1]))
            regenerated = _resize_to(out["regenerated"], size)
            keep = out.get("keep")
            if keep is not None:
                # Kept pixels carry no regeneration loss by default (kept_weight 0), so
                # the CRM's output there is unconstrained: show the input there, as
                # inpainting figures do, and the CRM's output where it was asked to fill in.
                work = (int(regenerated.shape[-2]), int(regenerated.shape[-1]))
                keep = _resize_to(keep.to(regenerated.dtype), work)
                regenerated = keep * out["redacted"] + (1.0 - keep) * regenerated
            cols.setdefault(f"{label} redacted", []).append(denormalize(redacted[0], mean, std))
            cols.setdefault(f"{label} regenerated", []).append(
                denormalize(regenerated[0, :, :h, :w], mean, std)
            )
    return list(cols.items()), rows


def save_prediction_panel(
    runs: Sequence[tuple[str, str | Path]],
    out: str | Path,
    indices: Sequence[int] = (0, 1, 2, 3),
    *,
    split: str = "val",
    seed: int = 0,
    data_root: str | Path | None = None,
    dpi: int = 100,
    **kwargs: Any,
) -> Path:
    """Write :func:`prediction_columns` as a PNG panel (one row per image).

    Example (not run as a doctest: it needs two trained runs):
        >>> save_prediction_panel([("baseline", "runs/b/seed0"), ("DejaVu", "runs/d/seed0")],
        ...                       "panel.png", indices=[0, 5])  # doctest: +SKIP
    """
    columns, rows = prediction_columns(
        runs, list(indices), split=split, seed=seed, data_root=data_root
    )
    return save_panel(columns, out, rows=rows, dpi=dpi, **kwargs)
